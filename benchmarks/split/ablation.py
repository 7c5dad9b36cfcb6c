"""The paper's claim: the LC split against the static and other splits, same budget.

For each architecture (Glow, RealNVP), split rule (static, random, lc, lc_reverse, variance)
and seed, trains one model with `lcflow_tf.training` (same architecture and total step budget;
the pilot of the data-dependent splits counts against it) and the library's default
training recipe (learning-rate schedule, weight averaging), and reports held-out bits/dim of
its averaged weights (its raw weights when averaging is off; with averages, the raw weights'
number too) on the whole test split. `lc` runs under both protocols: continue from the pilot
weights (`lc`) and re-initialise after the pilot (`lc+reinit`). Each run is its own subprocess.

Every finished run leaves a record (its exact configuration, machine and result) under
docs/results/ablation_runs/<name>/, committed with the tables: a rerun, on this machine or a
fresh clone, reuses each record whose configuration is the one the run would use and trains
only the missing runs, so a long ablation can be completed over several sittings. A record
or checkpoint folder from another configuration is never reused (the run starts over).

Writes docs/results/ablation_<dataset>[_quick].{json,md} (mean +- std per split, per-seed
values, wall time) and LC heatmaps of the seed-0 `lc` runs under docs/results/figures/.

  python benchmarks/split/ablation.py --dataset digits         # full digits ablation
  python benchmarks/split/ablation.py --dataset fashion_mnist  # full Fashion-MNIST ablation
  python benchmarks/split/ablation.py --quick                  # digits, 1 seed, short (~10 min)
  python benchmarks/split/ablation.py --smoke                  # digits, 1 seed, K=1 w8, 4 steps
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

SPLITS = ("static", "random", "lc", "lc_reverse", "variance")

# Fixed sizes per dataset (chosen for the CPU budget, never tuned on test results).
SIZES = {
    "digits": dict(levels=2, steps_per_level=4, hidden_channels=64, train_steps=2000,
                   lc_pilot_steps=300, batch_size=64, learning_rate=1e-3, warmup_steps=200),
    "fashion_mnist": dict(levels=2, steps_per_level=4, hidden_channels=64, train_steps=2000,
                          lc_pilot_steps=300, batch_size=64, learning_rate=1e-3,
                          warmup_steps=200),
}
# Per (dataset, architecture) changes to SIZES. RealNVP's residual conditioners run at full
# 28x28 resolution (checkerboard couplings): at width 64 with 2 blocks a Fashion-MNIST step
# costs ~90x Glow's conditioner FLOPs (measured: 85 training images/s, ~27 min per run on 2
# cores), so its Fashion-MNIST runs use width 32 and one residual block (~12x Glow's FLOPs,
# ~5.5 min per run).
ARCH_SIZES = {("fashion_mnist", "realnvp"): dict(hidden_channels=32, resnet_blocks=1)}
QUICK = dict(train_steps=600, lc_pilot_steps=100, warmup_steps=100)
# --smoke (the tests): a tiny model and budget, so that a run costs its worker's start-up and
# tracing, not the ablation model's steps and evaluation; results named *_smoke.
SMOKE = dict(steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=4,
             lc_pilot_steps=1, warmup_steps=2)
# TrainConfig fields (flat names) of the training recipe: the library's defaults, recorded with
# each run.
RECIPE_FIELDS = ("lr_schedule", "lr_min_ratio", "ema_decay", "network_init", "grad_clip_norm")


def default_recipe(architecture):
  """The library's default recipe and soft bounds for `architecture`, as explicit values.

  Written into every run's configuration (bounds resolved to numbers, 0 = unbounded), so a
  record says exactly what was trained, and records of another recipe, or from before the
  recipe existed, are retrained rather than reused.
  """
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from lcflow_tf import flows  # pylint: disable=g-import-not-at-top
  defaults = config_lib.TrainConfig().to_flags()
  model = flows.FlowConfig(image_shape=(8, 8, 1), architecture=architecture, levels=1)
  bounds = {name: float(getattr(model, f"resolved_{name}") or 0.0)
            for name in flows.BOUND_FIELDS}
  return dict({name: defaults[name] for name in RECIPE_FIELDS}, **bounds,
              scale_fn=model.resolved_scale_fn)


def with_explicit_scale(cfg):
  """`cfg` (a run's explicit fields) with its scale function named: a record or run saved
  without one (or with None) trained with its architecture's original
  (`lcflow_tf.flows.original_scale_fn`)."""
  if cfg.get("scale_fn") is not None:
    return cfg
  from lcflow_tf import flows  # pylint: disable=g-import-not-at-top
  return dict(cfg, scale_fn=flows.original_scale_fn(cfg.get("architecture", "glow")))
# Held-out evaluation: one dequantisation pass with this noise seed (heldout_spread.py and
# lc_anatomy.py reuse it).
EVAL_DEQUANT_SAMPLES = 1
EVAL_SEED = 1234


def held_out(flow, dataset):
  """The ablation's held-out evaluation of `flow`: every test image of `dataset`, noise above.

  Every benchmark whose numbers are compared with the ablation's evaluates this way.
  """
  from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
  return evaluation.held_out_bits_per_dim(flow, dataset.test(), dataset.num_bins,
                                          dequant_samples=EVAL_DEQUANT_SAMPLES, seed=EVAL_SEED)


def run_worker(spec_path):
  """Trains and evaluates one configuration; writes result.json beside its checkpoints."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from lcflow_tf import distribute
  from lcflow_tf import lc
  from lcflow_tf import pilots
  from lcflow_tf import training
  from lcflow_tf import viz
  from benchmarks.common import results

  with open(spec_path) as f:
    spec = json.load(f)
  cfg = resolved_config(spec["config"])
  distribute.configure_cpu_replicas(cfg.cpu_replicas)  # before TensorFlow sets up its devices
  start = time.time()
  trainer = training.Trainer(cfg, spec["model_dir"])
  result = pilots.train(trainer)
  train_seconds = time.time() - start
  with trainer.averaged_weights() as weights:  # as evaluation.load_run would load the run
    result_held_out = held_out(trainer.flow, trainer.dataset)
  # With averages, the trained weights on the same images too: what the averages cost or gain.
  raw = held_out(trainer.flow, trainer.dataset)["bits_per_dim"] if weights == "ema" else None
  if spec.get("figures_dir"):
    os.makedirs(spec["figures_dir"], exist_ok=True)
    for path in viz.write_lc_heatmaps(trainer.flow, spec["figures_dir"]):
      os.replace(path, os.path.join(spec["figures_dir"],
                                    f"{spec['figure_prefix']}_{os.path.basename(path)}"))
  out = {"test_bits_per_dim": result_held_out["bits_per_dim"], "weights": weights,
         "test_bits_per_dim_stderr": result_held_out["bits_per_dim_stderr"],
         "num_test_images": result_held_out["num_images"],
         **({"test_bits_per_dim_raw": raw} if raw is not None else {}),
         "final_train_bits_per_dim": float(np.mean(list(result.bits_per_dim.values())[-50:])),
         "train_seconds": train_seconds, "images_per_sec": result.images_per_sec,
         "nonfinite_steps": result.nonfinite_steps,
         # every field, the library's defaults included: a later change of a default is
         # caught when the record would be reused (`check_defaults`)
         "train_config": cfg.to_dict(),
         # per split point: the fraction of the kept elements that the static split keeps
         # too (its first C/2 channels): 1 = the static split, 0 = its opposite, ~0.5 = random
         "kept_as_static": [float(np.mean(m[..., :m.shape[-1] // 2]))
                            for m in lc.keep_masks(trainer.flow.junctions)]}
  results.write_json(os.path.join(spec["model_dir"], "result.json"), out)


def run_config(sizes, dataset, architecture, split, reinit, seed):
  """The TrainConfig fields of one run (the fixed and data-free splits have no pilot)."""
  cfg = dict(sizes, dataset=dataset, architecture=architecture, split=split, lc_reinit=reinit,
             seed=seed, log_every=max(1, sizes["train_steps"] // 4),
             checkpoint_every=sizes["train_steps"], images_every=10 ** 9)
  if split not in ("lc", "lc_reverse", "variance"):
    cfg["lc_pilot_steps"] = 0
  return cfg


def resolved_config(cfg):
  """The complete `TrainConfig` that the explicit fields `cfg` give with today's defaults."""
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  # Runs recorded before `lc_pilot` existed had the static pilot (config.ADDED_FIELDS).
  return config_lib.TrainConfig.from_flags(**{"lc_pilot": "static", **cfg})


def check_defaults(result, cfg, where):
  """Stops if the run in `where` was trained with other defaults than `cfg` gets today.

  Records match on the benchmark's explicit fields; the library's defaults fill the rest. A
  result that keeps its complete configuration (`train_config`, from 2026-12-04 on) is
  compared field by field, so a changed default is never mixed silently with older runs.
  Older results keep only the explicit fields and are taken as they are.

  Raises:
    SystemExit: naming every field whose value differs, then and now.
  """
  saved = result.get("train_config")
  if saved is None:
    return
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  try:
    then = config_lib.TrainConfig.from_dict(saved)
  except ValueError as e:  # e.g. a field this version of the library no longer has
    raise SystemExit(f"{where} was trained with a configuration this library cannot read "
                     f"({e}); delete it to retrain.") from None
  if then.model.scale_fn is None:  # saved before the scale was always named
    then = config_lib.TrainConfig.from_flags(**with_explicit_scale(then.to_flags()))
  changed = resolved_config(cfg).differences(then, ignore=())
  if changed:
    fields = ", ".join(f"{name}={old!r} then but {new!r} now" for name, new, old in changed)
    raise SystemExit(f"{where} was trained with other defaults ({fields}); delete it to "
                     f"retrain, or give the field explicitly in the benchmark's configuration.")


def stored(path, config_path, cfg):
  """The JSON stored at `path` if `config_path` says it comes from exactly `cfg`, else None."""
  try:
    with open(config_path) as f:
      config = json.load(f)["config"]
    with open(path) as f:
      value = json.load(f)
  except (OSError, ValueError, KeyError):
    return None
  from lcflow_tf import compat  # pylint: disable=g-import-not-at-top
  # A record written under a field's former name (`compat.RENAMED_FIELDS`) is the same run.
  # A record saved without a scale function trained with its architecture's original.
  same = with_explicit_scale(compat.renamed(config)) == with_explicit_scale(compat.renamed(cfg))
  return value if same else None


def train_run(cfg, model_dir, figures=None, script=None, extra=None):
  """Trains and evaluates one run in a subprocess; returns its result dict.

  `script` (default this file) is the benchmark whose `--worker SPEC` trains it; `extra`
  (JSON) goes into the spec for that worker.
  """
  spec_path = os.path.join(model_dir, "spec.json")
  try:
    with open(spec_path) as f:
      stale = json.load(f)["config"] != cfg
  except (OSError, ValueError, KeyError):
    stale = os.path.exists(model_dir)
  if stale:  # checkpoints of another configuration: never resumed from
    shutil.rmtree(model_dir)
  os.makedirs(model_dir, exist_ok=True)
  with open(spec_path, "w") as f:
    json.dump(dict({"config": cfg, "model_dir": model_dir}, **(figures or {}), **(extra or {})),
              f)
  proc = subprocess.run([sys.executable, script or __file__, "--worker", spec_path],
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                        capture_output=True, text=True)
  if proc.returncode:
    sys.stderr.write(proc.stderr[-4000:])
    raise SystemExit(f"run {model_dir} failed (exit {proc.returncode})")
  with open(os.path.join(model_dir, "result.json")) as f:
    return json.load(f)


FIGURE_SEED = 0  # every setting's seeds start at 0


def figure_spec(results_dir, prefix, seed):
  """Where run `seed` writes its LC heatmaps (`train_run`'s `figures`), or None.

  Only the seed-0 run draws them, whichever seeds one command asks for: a later `--seeds 7`
  must not overwrite the seed-0 figures that the docs show.
  """
  if seed != FIGURE_SEED:
    return None
  return dict(figures_dir=os.path.join(results_dir, "figures"), figure_prefix=prefix)


def recorded_or_trained(cfg, model_dir, record_path, figures=None, script=None, extra=None):
  """The run's record `{config, machine, result}`, stored or trained now.

  Taken from the record file if it holds `cfg`, else from a finished run folder (result.json
  beside the spec.json of `cfg`), else the run is trained now (`train_run` with `script` and
  `extra`); a new record is written. Each key of `extra` names a measurement that the worker
  adds to the result under the same key: a stored result without it is incomplete (e.g. a
  worker that failed after training) and goes back to the worker, which then measures only
  what is missing. A stored run trained with other library defaults stops the benchmark
  (`check_defaults`).
  """
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top

  def complete(res):
    return res is not None and all(k in res for k in (extra or {}))

  record = stored(record_path, record_path, cfg)
  if record is not None and complete(record["result"]):
    check_defaults(record["result"], cfg, record_path)
    return record
  res = stored(os.path.join(model_dir, "result.json"), os.path.join(model_dir, "spec.json"),
               cfg)
  if complete(res):
    check_defaults(res, cfg, model_dir)
  else:
    print(f"[{os.path.basename(model_dir)}] training {cfg['train_steps']} steps ...", flush=True)
    res = train_run(cfg, model_dir, figures, script, extra)
  record = {"config": cfg, "machine": results.machine(), "result": res}
  results.write_json(record_path, record)
  return record


def variants(splits):
  for split in splits:
    yield split, split, False
    if split == "lc":
      yield "lc+reinit", split, True


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="digits", choices=sorted(SIZES))
  parser.add_argument("--architectures", default="glow,realnvp")
  parser.add_argument("--splits", default=",".join(SPLITS))
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--quick", action="store_true",
                      help="digits-sized budget: 600 steps (100 pilot), seed 0 only")
  parser.add_argument("--smoke", action="store_true",
                      help="the tests' size: K=1, width 8, batch 16, 4 steps, seed 0 only")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "ablation"))
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--train_steps", type=int, default=None, help="override (smoke tests)")
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return run_worker(args.worker)

  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  results_dir = args.results_dir or results.RESULTS_DIR
  sizes = dict(SIZES[args.dataset])
  seeds = [int(s) for s in args.seeds.split(",")]
  if args.quick or args.smoke:
    sizes.update(SMOKE if args.smoke else QUICK)
    seeds = seeds[:1] if args.seeds == "0,1,2" else seeds
  if args.train_steps:
    sizes.update(train_steps=args.train_steps,
                 lc_pilot_steps=max(1, min(sizes["lc_pilot_steps"], args.train_steps // 3)),
                 warmup_steps=min(sizes["warmup_steps"], args.train_steps))
  splits = [s for s in args.splits.split(",") if s]
  unknown = [s for s in splits if s not in SPLITS]
  if unknown:
    parser.error(f"--splits: unknown {unknown}; allowed: {', '.join(SPLITS)}")
  run_name = f"ablation_{args.dataset}" + ("_smoke" if args.smoke else
                                           "_quick" if args.quick else "")
  workdir = os.path.join(args.workdir, run_name)  # runs are shared by every subset
  architectures = args.architectures.split(",")
  arch_sizes = {} if args.smoke else ARCH_SIZES  # the smoke size is every architecture's
  name = run_name + ("" if sorted(architectures) == ["glow", "realnvp"]
                     else "_" + "_".join(architectures))
  rows, per_run, per_seed, dates = [], [], {}, set()
  for arch in architectures:
    for label, split, reinit in variants(splits):
      values, seconds, overlap = [], [], []
      for seed in seeds:
        run = f"{arch}_{label.replace('+', '_')}_seed{seed}"
        model_dir = os.path.join(workdir, run)
        record_path = os.path.join(results_dir, "ablation_runs", run_name, run + ".json")
        cfg = run_config(dict(sizes, **default_recipe(arch),
                              **arch_sizes.get((args.dataset, arch), {})),
                         args.dataset, arch, split, reinit, seed)
        figures = None
        if split == "lc":
          figures = figure_spec(results_dir, f"{run_name}_{arch}_{label.replace('+', '_')}", seed)
        record = recorded_or_trained(cfg, model_dir, record_path, figures)
        res = record["result"]
        dates.add(record["machine"]["date"])
        values.append(res["test_bits_per_dim"])
        seconds.append(res["train_seconds"])
        overlap.append(res["kept_as_static"])
        per_run.append(dict(architecture=arch, split=label, seed=seed, **res))
        print(f"[{arch} {label} seed {seed}] test bits/dim {res['test_bits_per_dim']:.4f}",
              flush=True)
      per_seed[(arch, label)] = values
      rows.append({
          "architecture": arch, "split": label,
          "test bpd mean": statistics.mean(values),
          "std": statistics.stdev(values) if len(values) > 1 else 0.0,
          "per seed": ", ".join(f"{v:.4f}" for v in values),
          "kept as static": ", ".join(f"{statistics.mean(k):.2f}" for k in zip(*overlap)),
          "train s/run": statistics.mean(seconds)})
  for row in rows:  # paired by seed: same initialisation and data order as static
    static = per_seed.get((row["architecture"], "static"))
    if static and row["split"] != "static":
      diffs = [v - s for v, s in zip(per_seed[(row["architecture"], row["split"])], static)]
      row["vs static"] = (f"{statistics.mean(diffs):+.3f} "
                          f"(lower on {sum(d < 0 for d in diffs)}/{len(diffs)})")
  command = results.command_line()  # subsets included
  arch_notes = "".join(f"; {a}: {json.dumps(arch_sizes[(args.dataset, a)])}"
                       for a in architectures if (args.dataset, a) in arch_sizes)
  notes = (f"Same architecture and budget for every split: {json.dumps(sizes)}{arch_notes}; "
           f"seeds {seeds}; runs trained on {', '.join(sorted(dates))}. Test bits/dim over the "
           "whole held-out split, one dequantisation sample. `vs static`: mean over seeds of "
           "(this split - static) in bits/dim, paired by seed, and on how many seeds this "
           "split is lower (better). `lc+reinit` re-initialises the weights after the pilot "
           "(the budget includes the pilot either way). `kept as static`: per split point "
           "(level 1, 2, ...), the fraction of the elements kept for the next level that the "
           "static split (first half of the channels) keeps too, mean over seeds: 1 = the "
           "static split, 0 = its complement, about 0.5 = unrelated.")
  text = results.write(name, command, rows,
                       ["architecture", "split", "test bpd mean", "std", "per seed",
                        "vs static", "kept as static", "train s/run"], notes=notes,
                       results_dir=results_dir)
  results.write_json(os.path.join(results_dir, f"{name}_runs.json"), per_run)
  print(text)


if __name__ == "__main__":
  main()
