"""Does the LC ranking change with training? A converged model's rankings against its pilots'.

  python benchmarks/split/converged_ranking.py --pretrained fashion_mnist_glow \
      --workdir runs/converged_ranking --name converged_ranking_fashion_mnist_glow

For a trained run (--model_dir, or a model of lcflow_tf.pretrained), trains the `nosplit`
pilots that an `lc` run with the same data, recipe, seed and step budget would train first
(`lcflow_tf.pilots`: --pilot_steps steps each, the run's learning-rate schedule, in
WORKDIR/pilots; resumable, and reused when done), then writes lc_anatomy's table with
`--rankings lc,logdet` for both: per junction, what the LC and the log-det rankings keep from
the converged model's held-out values (`model` rows) and from the pilots' (`pilot j` rows),
as channel orders and as the share in static's kept half.

The converged model was trained with its own split (the library's default `static`), which
shapes its statistics at the junctions (the confound lc_anatomy's notes describe); its rows
say what the rankings read at convergence under that split, not what an `lc` run would
converge to.
"""

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from benchmarks.split import lc_anatomy  # pylint: disable=g-import-not-at-top
from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
from lcflow_tf import pilots  # pylint: disable=g-import-not-at-top
from lcflow_tf import pretrained  # pylint: disable=g-import-not-at-top
from lcflow_tf import training  # pylint: disable=g-import-not-at-top

RULES = ("lc", "logdet")


def train_pilots(model_dir, workdir, pilot_steps):
  """Trains (or finds) the nosplit pilots of `model_dir`'s run; returns their run directory."""
  trained = config_lib.read_train_config(model_dir)
  if trained is None:
    raise ValueError(f"{model_dir} has no {config_lib.CONFIG_FILE}; give a training run.")
  config = dataclasses.replace(
      trained, model=dataclasses.replace(trained.model, split="lc"), lc_pilot="nosplit",
      lc_pilot_steps=pilot_steps, images_every=10 ** 9, checkpoint_every=pilot_steps)
  pilots.check(config)
  pilot_dir = os.path.join(workdir, "pilots")
  trainer = training.Trainer(config, pilot_dir)
  pilots.train(trainer, until_step=pilots.total_steps(config))
  return pilot_dir


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--model_dir", help="a trained run")
  source.add_argument("--pretrained", help=f"a model of lcflow_tf.pretrained "
                      f"({', '.join(pretrained.NAMES)})")
  parser.add_argument("--pilot_steps", type=int, default=300, help="steps of each pilot")
  parser.add_argument("--workdir", default="runs/converged_ranking", help="the pilots' runs")
  parser.add_argument("--max_images", type=int, default=2000, help="held-out images used")
  parser.add_argument("--name", default="converged_ranking", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  try:
    model_dir = args.model_dir or pretrained.path(args.pretrained)
    pilot_dir = train_pilots(model_dir, args.workdir, args.pilot_steps)
    rows, counts = [], []
    for run_dir, source in ((model_dir, "model"), (pilot_dir, "pilot")):
      run_rows, count = lc_anatomy.anatomy(run_dir, args.max_images, RULES)
      # The pilots' run: its pilot rows only (its model has not trained yet).
      rows += [r for r in run_rows if r["source"].startswith(source)]
      counts.append(count)
  except ValueError as e:
    parser.error(str(e))
  notes = (f"Held-out images per run: {counts}. First run: the converged model "
           f"({args.pretrained or model_dir}; its `model` rows: what the rankings read from it "
           "at convergence, trained with its own split). Second: the nosplit pilots of an `lc` "
           f"run with the same data, recipe, seed and budget ({args.pilot_steps} steps each; "
           "its `pilot j` rows: what the rankings read where the `lc` rule decides; `trained "
           "split` there: what the `lc` rule chose from the pilot's training statistics). "
           "Columns as in lc_anatomy.py: `RULE keeps on held-out` = the channel order the "
           "rule gives, its most common form over the locations; `RULE keeps as static` = the "
           "share of the kept elements in static's kept half (1 = static, 0 = its complement).")
  columns = ["run", "rule", "source", "junction", "mean log N(h) per channel",
             "mean A per channel", "trained split"] + [
                 f"{r} keeps {w}" for r in RULES for w in ("on held-out", "as static")]
  print(results.write(args.name, results.command_line(), rows, columns, notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
