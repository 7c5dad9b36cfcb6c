"""Why the LC split keeps what it keeps: its score split into prior and log-det parts.

For trained runs (model_dirs written by train.py or benchmarks/ablation.py), evaluates on the
held-out images, at every split point, the mean LC score `log N(h) + A` of the two channel
halves -- the half the static split keeps (first C/2 channels) and the half it factors out --
and its two parts: the prior term `log N(h)` and the carried log-det map `A`. Also reports
which half the `lc` rule keeps on these images (the fraction of kept elements in the static
half), and the split the run was trained with: the most common channel order of its
permutation and on how many locations it holds. Writes docs/results/<--name>.{json,md}.

  python benchmarks/lc_anatomy.py runs/ablation/ablation_digits/glow_static_seed0 \
      runs/ablation/ablation_digits/realnvp_static_seed0
"""

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks import ablation
from benchmarks import results
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import lc


def order_summary(order):
  """The most common channel order of a [H, W, C] split permutation, and where it holds."""
  order = np.asarray(order)
  orders = collections.Counter(tuple(int(i) for i in v)
                               for v in order.reshape(-1, order.shape[-1]))
  mode, count = orders.most_common(1)[0]
  half = len(mode) // 2
  return (f"keeps {list(mode[:half])}, factors out {list(mode[half:])} at "
          f"{count}/{sum(orders.values())} locations")


def anatomy(model_dir, max_images):
  """Rows of the table for one run."""
  run = evaluation.load_run(model_dir)
  batches = data.make_eval_pipeline(run.dataset.test().take(max_images), 256,
                                    run.dataset.num_bins, seed=ablation.EVAL_SEED)
  recorder_sums = None
  count = 0
  for x in batches:
    recorder = lc.SplitRecorder()
    run.flow.encode_with_log_det_map(x, recorder=recorder)
    parts = [(np.asarray(s), np.asarray(lc.standard_normal_log_prob(tf.cast(h, tf.float64))))
             for s, h in zip(recorder.scores, recorder.inputs)]
    sums = [(s.sum(0), p.sum(0)) for s, p in parts]
    recorder_sums = sums if recorder_sums is None else [
        (a + s, b + p) for (a, b), (s, p) in zip(recorder_sums, sums)]
    count += len(x)
  config = run.flow.config
  rows = []
  trained = [order_summary(j.permutation.indices.numpy()) for j in run.flow.junctions]
  for level, (score, prior) in enumerate(recorder_sums):
    score, prior = score / count, prior / count  # per-element means [H, W, C]
    log_det = score - prior
    c = score.shape[-1]
    kept = lc.keep_mask(lc.split_permutation(score, "lc"))
    for half, sl in (("static keeps (first C/2)", slice(0, c // 2)),
                     ("static factors out", slice(c // 2, c))):
      rows.append({
          "run": f"{os.path.basename(os.path.normpath(model_dir))} ({config.architecture})",
          "split point": level + 1, "channel half": half,
          "mean LC": float(score[..., sl].mean()), "mean log N(h)": float(prior[..., sl].mean()),
          "mean A (log-det)": float(log_det[..., sl].mean()),
          "lc keeps (fraction)": float(kept[..., sl].sum() / kept.sum()),
          "trained split (most common order)": trained[level]})
  return rows, count


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dirs", nargs="+", help="trained run directories")
  parser.add_argument("--max_images", type=int, default=10000, help="held-out images used")
  parser.add_argument("--name", default="lc_anatomy", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  rows, counts = [], []
  for model_dir in args.model_dirs:
    try:
      run_rows, count = anatomy(model_dir, args.max_images)
    except ValueError as e:
      parser.error(str(e))
    rows += run_rows
    counts.append(count)
  notes = (f"Held-out images per run: {counts}, one dequantisation sample. Per split point "
           "and channel half: the mean over images and elements of the LC score "
           "log N(h) + A and of its two parts. 'lc keeps': the share of the elements the lc "
           "rule keeps on these images that lie in this half (0.5/0.5 = unrelated to the "
           "static split). 'trained split': the channel order of the split the run was "
           "trained with (channels 0..C/2-1 kept = the static split), the most common one "
           "over the locations and on how many it holds.")
  print(results.write(args.name, results.command_line(), rows,
                      ["run", "split point", "channel half", "mean LC", "mean log N(h)",
                       "mean A (log-det)", "lc keeps (fraction)",
                       "trained split (most common order)"], notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
