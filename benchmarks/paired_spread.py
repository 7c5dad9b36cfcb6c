"""How much pairing by seed cancels the seed-to-seed spread: analysis of committed run records.

Reads per-run records (the `*_runs.json` lists that ablation.py and split_study.py write: one
dict per run with `architecture`, `split`, `seed`, `test_bits_per_dim`) and reports, for every
row against the reference split of the same architecture, over the seeds both have: the mean
paired difference (row - reference) with its 95% Student-t interval, the standard deviation of
the paired differences sd(d), the correlation of the two rows over seeds, and each row's own
seed std. Pairing helps exactly when the correlation is high: sd(d)^2 = sd_row^2 + sd_ref^2 -
2 corr sd_row sd_ref. Trains nothing.

  python benchmarks/paired_spread.py docs/results/ablation_fashion_mnist_runs.json \\
      docs/results/ablation_digits_runs.json --name paired_spread_ablation
"""

import argparse
import collections
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import intervals  # pylint: disable=g-import-not-at-top
from benchmarks import results  # pylint: disable=g-import-not-at-top

COLUMNS = ["records", "architecture", "row", "seeds", "mean diff to reference", "95% CI",
           "sd(d)", "corr over seeds", "row seed std", "reference seed std"]


def paired_rows(runs, reference="static"):
  """One row per (architecture, split) other than `reference`, paired with it by seed."""
  by_row = collections.defaultdict(dict)
  for run in runs:
    by_row[(run["architecture"], run["split"])][run["seed"]] = run["test_bits_per_dim"]
  rows = []
  for (arch, split), values in sorted(by_row.items()):
    ref = by_row.get((arch, reference))
    if split == reference or not ref:
      continue
    seeds = sorted(set(values) & set(ref))
    if len(seeds) < 2:
      continue
    row, base = [values[s] for s in seeds], [ref[s] for s in seeds]
    diffs = [a - b for a, b in zip(row, base)]
    rows.append({"architecture": arch, "row": split, "seeds": len(seeds),
                 "mean diff to reference": statistics.mean(diffs),
                 "95% CI": f"+- {intervals.mean_halfwidth(diffs):.3f}",
                 "sd(d)": statistics.stdev(diffs),
                 "corr over seeds": _correlation(row, base),
                 "row seed std": statistics.stdev(row),
                 "reference seed std": statistics.stdev(base)})
  return rows


def _correlation(a, b):
  try:
    return statistics.correlation(a, b)
  except statistics.StatisticsError:  # a constant row
    return float("nan")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("records", nargs="+", help="*_runs.json files (lists of run records)")
  parser.add_argument("--reference", default="static", help="the split every row is paired with")
  parser.add_argument("--name", default="paired_spread", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  rows = []
  for path in args.records:
    try:
      with open(path) as f:
        runs = json.load(f)
    except (OSError, ValueError) as e:
      parser.error(f"cannot read run records {path}: {e}")
    if not isinstance(runs, list):
      parser.error(f"{path} is not a list of run records (a *_runs.json file)")
    rows += [dict(r, records=os.path.basename(path)) for r in paired_rows(runs, args.reference)]
  notes = (f"Paired by seed with `{args.reference}` of the same architecture, over the seeds "
           "both rows have; test bits/dim as recorded. sd(d): standard deviation of the paired "
           "differences; 95% CI: Student t interval of their mean.")
  print(results.write(args.name, results.command_line(), rows, COLUMNS, notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
