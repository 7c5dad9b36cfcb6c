"""Benchmarks of lcflow_tf, one sub-package per question they answer.

  split/     does the likelihood-contribution split help? (ablation, split study, LC anatomy,
             per-image spread, paired spread)
  peers/     how do ours, TFP's `tfb.Glow` and normflows' Glow compare, trained alike?
  numerics/  how much does a result move (seeds, float order), and where do round trips and
             training go wrong? (noise floor, robustness, round-trip anatomy, training traces)
  speed/     what does a step, a log-det, an export or the LC statistics cost? (scaling, LC
             overhead, log-det cost, export latency, the training step's profile)
  quality/   what can a sample-quality distance be compared against? (the classifier, real
             image sets)
  common/    what they all use: result records, worker processes, intervals, figures.

Every script runs from the repository's root as `python benchmarks/<package>/<script>.py` and
writes its records into docs/results/. Imports go one way: `common` imports no other package
here; `numerics` builds on the ablation's sizes and run records (`split.ablation`); `peers`
uses the training step's profiler (`speed.profile_step`); nothing imports a package that
imports it back (tests/test_benchmarks.py checks the import graph for cycles).
"""
