"""Why a split rule keeps what it keeps: the LC score's parts per channel, per junction.

For trained runs (model_dirs written by train.py, benchmarks/split/ablation.py or
benchmarks/split/split_study.py), evaluates on the held-out images, at every junction l, the mean
over images and locations of each channel's prior term log N(h_l) and carried log-det map A_l
(the LC score is their sum). Sources, one row each:
  * `model`: the trained model (its junctions factor out with the split it was trained with);
  * `pilot j` (runs of the `nosplit` protocol, `lcflow_tf.lc`): the pilot flow of junction j
    (`model_dir/pilot_j`), in which junction j and the deeper ones factor nothing out: the
    statistics the rule read, shaped by no split at junction j.
With `--rankings lc,logdet`, every row also says what the LC and log-det rankings keep from
its own held-out values (for a `model` row: at convergence, against what its pilots kept).
For each row: the channels the run's split keeps at that junction (the most common order over
the locations, and the number of distinct kept sets over the locations: 1 = the same channels
everywhere), the share of kept elements that the static split keeps too (first C/2 channels:
1 = static, 0 = its complement), and, for a pilot, the channels its rule ranks highest on
these held-out images (`kept by rule on held-out`).

The confound this measures (issue 14): a model trained with a split gives the half it factors
out the higher log N(h), so a rule reading statistics from a static-split pilot keeps static's
factored half. Under `nosplit` the pilot's junction has no split to mirror.

  python benchmarks/split/lc_anatomy.py \
      runs/split_study/split_study_digits_l3_quick/glow_static_seed0 \
      runs/split_study/split_study_digits_l3_quick/glow_lc_at_nosplit_seed0 --name lc_anatomy_x
"""

import argparse
import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
from lcflow_tf import lc  # pylint: disable=g-import-not-at-top


def order_summary(order):
  """The most common channel order of a [H, W, C] split permutation, and where it holds."""
  order = np.asarray(order)
  orders = collections.Counter(tuple(int(i) for i in v)
                               for v in order.reshape(-1, order.shape[-1]))
  mode, count = orders.most_common(1)[0]
  half = len(mode) // 2
  return (f"keeps {list(mode[:half])}, factors out {list(mode[half:])} at "
          f"{count}/{sum(orders.values())} locations")


def kept_sets(order):
  """Number of distinct kept channel sets over the locations of a [H, W, C] order."""
  order = np.asarray(order)
  half = order.shape[-1] // 2
  return len({tuple(sorted(int(i) for i in v[:half]))
              for v in order.reshape(-1, order.shape[-1])})


def kept_as_static(order):
  """Share of the kept elements that lie in the first C/2 channels (the static split's)."""
  mask = lc.keep_mask(order)
  return float(mask[..., : mask.shape[-1] // 2].sum() / mask.sum())


def held_out_parts(flow, dataset, max_images):
  """Per junction: mean log N(h) and mean A [H, W, C] over the held-out images, and the count."""
  batches = data.make_eval_pipeline(dataset.test().take(max_images), 256, dataset.num_bins,
                                    seed=ablation.EVAL_SEED)
  sums, count = None, 0
  for x in batches:
    recorder = lc.SplitRecorder()
    flow.encode_with_log_det_map(x, recorder=recorder)
    parts = []
    for score, h in zip(recorder.scores, recorder.inputs):
      prior = lc.standard_normal_log_prob(tf.cast(h, tf.float64)).numpy()
      parts.append((prior.sum(0), np.asarray(score, np.float64).sum(0) - prior.sum(0)))
    sums = parts if sums is None else [(a + p, b + q) for (a, b), (p, q) in zip(sums, parts)]
    count += len(x)
  return [(p / count, a / count) for p, a in sums], count


def _vector(values):
  return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def _row(name, rule, source, junction, prior, log_det, order, **extra):
  return dict({
      "run": name, "rule": rule, "source": source, "junction": junction,
      "mean log N(h) per channel": _vector(prior.mean((0, 1))),
      "mean A per channel": _vector(log_det.mean((0, 1))),
      "trained split": order_summary(order), "kept sets": kept_sets(order),
      "kept as static": round(kept_as_static(order), 3)}, **extra)


# The score each data-dependent rule ranks by (a reverse rule reads its forward rule's score).
SCORES = {"lc": lambda prior, log_det: prior + log_det, "logdet": lambda prior, log_det: log_det}
SCORES.update({f"{rule}_reverse": score for rule, score in list(SCORES.items())})


def rankings(prior, log_det, rules):
  """{column: value} of what each rule of `rules` keeps on these held-out values."""
  columns = {}
  for rule in rules:
    order = lc.split_permutation(SCORES[rule](prior, log_det), rule)
    columns[f"{rule} keeps on held-out"] = order_summary(order)
    columns[f"{rule} keeps as static"] = round(kept_as_static(order), 3)
  return columns


def anatomy(model_dir, max_images, rules=()):
  """Rows of the table for one run (model, and its nosplit pilots if any); with `rules`,
  every row also says what those rules keep on its held-out values (`rankings`)."""
  run = evaluation.load_run(model_dir)
  config = run.train_config
  rule = config.model.split
  protocol = config.lc_pilot if config.uses_pilot else "-"
  name = f"{os.path.basename(os.path.normpath(model_dir))} ({config.model.architecture})"
  label = f"{rule}@{protocol}" if config.uses_pilot else rule
  orders = [j.permutation.indices.numpy() for j in run.flow.junctions]
  parts, count = held_out_parts(run.flow, run.dataset, max_images)
  rows = [_row(name, label, "model", j + 1, prior, log_det, orders[j],
               **rankings(prior, log_det, rules))
          for j, (prior, log_det) in enumerate(parts)]
  for j in range(len(orders)):
    pilot_dir = os.path.join(model_dir, f"pilot_{j}")
    if not (config.uses_pilot and protocol == "nosplit" and os.path.isdir(pilot_dir)):
      continue
    pilot = evaluation.load_run(pilot_dir, dataset=run.dataset)
    pilot_parts, _ = held_out_parts(pilot.flow, run.dataset, max_images)
    prior, log_det = pilot_parts[j]
    # The budget-matched control (`static` with `budget_matched_control`) reads no score.
    extra = {}
    if rule in SCORES:
      extra["kept by rule on held-out"] = order_summary(
          lc.split_permutation(SCORES[rule](prior, log_det), rule))
    extra.update(rankings(prior, log_det, rules))
    rows.append(_row(name, label, f"pilot {j}", j + 1, prior, log_det, orders[j], **extra))
  return rows, count


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dirs", nargs="+", help="trained run directories")
  parser.add_argument("--max_images", type=int, default=10000, help="held-out images used")
  parser.add_argument("--name", default="lc_anatomy", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--rankings", default="", help="comma-separated rules among "
                      f"{', '.join(SCORES)}: per row, what each keeps on the held-out values")
  args = parser.parse_args()
  rules = [r for r in args.rankings.split(",") if r]
  for rule in rules:
    if rule not in SCORES:
      parser.error(f"--rankings: unknown rule {rule!r}; choose from {', '.join(SCORES)}.")
  rows, counts = [], []
  for model_dir in args.model_dirs:
    try:
      run_rows, count = anatomy(model_dir, args.max_images, rules)
    except ValueError as e:
      parser.error(str(e))
    rows += run_rows
    counts.append(count)
  notes = (f"Held-out images per run: {counts}, one dequantisation sample (seed "
           f"{ablation.EVAL_SEED}). Per run, source and junction (1 = outermost): the mean over "
           "images and locations of each channel's log N(h) and carried log-det map A (the "
           "LC score is their sum); `model` = the trained model, `pilot j` = the nosplit pilot "
           "flow of junction j (junction j and deeper factor nothing out). `trained split`: "
           "the run's channel order at that junction, its most common form over the locations "
           "(channels 0..C/2-1 kept = static); `kept sets`: distinct kept channel sets over the "
           "locations; `kept as static`: share of the kept elements in static's kept half "
           "(1 = static, 0 = its complement). `kept by rule on held-out`: what the run's rule "
           "ranks highest from the pilot's held-out values." + (
               f" `RULE keeps on held-out` ({', '.join(rules)}): what the rule keeps from this "
               "row's held-out values (the model's own at a `model` row), and its share in "
               "static's kept half." if rules else ""))
  print(results.write(args.name, results.command_line(), rows,
                      ["run", "rule", "source", "junction", "mean log N(h) per channel",
                       "mean A per channel", "trained split", "kept sets", "kept as static",
                       "kept by rule on held-out"]
                      + [f"{r} keeps {w}" for r in rules for w in ("on held-out", "as static")],
                      notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
