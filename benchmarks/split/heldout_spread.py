"""How the held-out bits/dim of trained runs is spread over the images.

The ablation reports the mean test bits/dim, the likelihood's usual summary. When a model
overfits, a handful of held-out images can get an enormous bits/dim and decide that mean.
For trained runs (model_dirs written by train.py or benchmarks/split/ablation.py) this evaluates
every held-out image with the same dequantisation noise as the ablation (one pass, seed 1234)
and reports the mean, the median, the mean without the worst 1% of the images, the worst
image and how many images lie above the run's own median by more than `--outlier_bpd`.
Writes docs/results/<--name>.{json,md}.

  python benchmarks/split/heldout_spread.py runs/ablation/ablation_digits/realnvp_static_seed0 \
      runs/ablation/ablation_digits/realnvp_lc_seed0
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks.common import results
from benchmarks.split import ablation
from lcflow_tf import evaluation


def spread(model_dir, outlier_bpd):
  """One table row: summaries of the per-image held-out bits/dim of one run."""
  run = evaluation.load_run(model_dir)
  held_out = ablation.held_out(run.flow, run.dataset)
  per_image = np.sort(held_out["per_image"])
  kept = per_image[:len(per_image) - max(1, len(per_image) // 100)]
  median = float(np.median(per_image))
  return {
      "run": os.path.basename(os.path.normpath(model_dir)),
      "images": int(per_image.size),
      "mean": float(per_image.mean()),
      "median": median,
      "mean without worst 1%": float(kept.mean()),
      "worst image": float(per_image[-1]),
      "outliers": int(np.sum(per_image > median + outlier_bpd)),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dirs", nargs="+", help="trained run directories")
  parser.add_argument("--outlier_bpd", type=float, default=1.0,
                      help="an image is an outlier when its bits/dim exceeds the run's "
                           "median by more than this (> 0)")
  parser.add_argument("--name", default="heldout_spread", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if not args.outlier_bpd > 0:
    parser.error(f"--outlier_bpd must be > 0, got {args.outlier_bpd}")
  rows = []
  for model_dir in args.model_dirs:
    try:
      rows.append(spread(model_dir, args.outlier_bpd))
    except ValueError as e:
      parser.error(str(e))
  notes = ("Per-image held-out bits/dim with the ablation's dequantisation noise "
           f"({ablation.EVAL_DEQUANT_SAMPLES} pass, seed {ablation.EVAL_SEED}), so `mean` is "
           "the ablation's test bits/dim. `mean without worst 1%`: "
           "the mean after dropping the highest 1% of the images (at least one). "
           f"`outliers`: images whose bits/dim exceeds the run's median by more than "
           f"{args.outlier_bpd:g}.")
  print(results.write(args.name, results.command_line(), rows,
                      ["run", "images", "mean", "median", "mean without worst 1%",
                       "worst image", "outliers"], notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
