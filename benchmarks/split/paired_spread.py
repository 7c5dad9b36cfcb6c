"""How much pairing by seed cancels the seed-to-seed spread: analysis of committed run records.

Reads the per-run lists that the split benchmarks write (`<name>_runs.json`, one dict per run
with `architecture`, `seed`, `test_bits_per_dim` and its row: `split` in ablation.py's lists,
`row` in split_study.py's) and reports, for every row against each reference row of the same
architecture (`--references`, in order: every other row is paired with each of them, and a
reference with the references before it), over the seeds both have: the mean paired
difference (row - reference) with its 95% Student-t interval, the standard deviation of the
paired differences sd(d), the correlation of the two rows over seeds, and each row's own seed
std. Pairing helps exactly when the correlation is high: sd(d)^2 = sd_row^2 + sd_ref^2 -
2 corr sd_row sd_ref. Trains nothing.

  python benchmarks/split/paired_spread.py docs/results/ablation_fashion_mnist_runs.json \\
      docs/results/ablation_digits_runs.json --name paired_spread_ablation
  python benchmarks/split/paired_spread.py docs/results/split_study_digits_l3_runs.json \\
      --references static,static@nosplit --name paired_spread_split_study_digits_l3
"""

import argparse
import collections
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.common import intervals  # pylint: disable=g-import-not-at-top
from benchmarks.common import results  # pylint: disable=g-import-not-at-top

COLUMNS = ["records", "architecture", "row", "reference", "seeds", "mean diff to reference",
           "95% CI", "sd(d)", "corr over seeds", "row seed std", "reference seed std"]
# The key naming a run's row: ablation.py's lists say `split`, split_study.py's `row`.
ROW_KEYS = ("split", "row")


def row_of(run):
  """The row a run record belongs to (`ROW_KEYS`).

  Raises:
    ValueError: if the record has none of them, or lacks the other fields this script reads.
  """
  missing = [k for k in ("architecture", "seed", "test_bits_per_dim") if k not in run]
  found = [k for k in ROW_KEYS if k in run]
  if missing or not found:
    raise ValueError(f"a run record needs architecture, seed, test_bits_per_dim and one of "
                     f"{', '.join(ROW_KEYS)}; got the keys {sorted(run)}")
  return run[found[0]]


def paired_rows(runs, references=("static",)):
  """One row per (architecture, row, reference), paired by seed; see the module docstring.

  Args:
    runs: run records (dicts: `row_of`, `architecture`, `seed`, `test_bits_per_dim`).
    references: the rows others are paired with, in order; a reference row is paired only
      with the references before it. A reference an architecture lacks is skipped.

  Returns:
    table rows (dicts with the keys of `COLUMNS` but `records`), by architecture, then row,
    then reference; pairs with fewer than 2 common seeds are left out.
  """
  by_row = collections.defaultdict(dict)
  for run in runs:
    by_row[(run["architecture"], row_of(run))][run["seed"]] = run["test_bits_per_dim"]
  rows = []
  for (arch, label), values in sorted(by_row.items()):
    own = references.index(label) if label in references else len(references)
    for reference in references[:own]:
      ref = by_row.get((arch, reference))
      seeds = sorted(set(values) & set(ref or ()))
      if len(seeds) < 2:
        continue
      row, base = [values[s] for s in seeds], [ref[s] for s in seeds]
      diffs = [a - b for a, b in zip(row, base)]
      rows.append({"architecture": arch, "row": label, "reference": reference,
                   "seeds": len(seeds), "mean diff to reference": statistics.mean(diffs),
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


def read_runs(path):
  """The run records of a `*_runs.json` list; ValueError naming the file if it is not one."""
  try:
    with open(path) as f:
      runs = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read run records {path}: {e}") from None
  if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
    raise ValueError(f"{path} is not a list of run records (a *_runs.json file)")
  try:
    for run in runs:
      row_of(run)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None
  return runs


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("records", nargs="+", help="*_runs.json files (lists of run records)")
  parser.add_argument("--references", default="static",
                      help="comma-separated rows every other row is paired with, in order "
                           "(e.g. static,static@nosplit: the split study's static row and "
                           "its budget-matched control)")
  parser.add_argument("--name", default="paired_spread", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  references = tuple(r for r in args.references.split(",") if r)
  if not references or len(set(references)) != len(references):
    parser.error(f"--references must name distinct rows, got {args.references!r}")
  rows = []
  for path in args.records:
    try:
      runs = read_runs(path)
    except ValueError as e:
      parser.error(str(e))
    rows += [dict(r, records=os.path.basename(path)) for r in paired_rows(runs, references)]
  notes = (f"Paired by seed with each of {', '.join(f'`{r}`' for r in references)} of the same "
           "architecture (a reference with the ones listed before it), over the seeds both rows "
           "have; test bits/dim as recorded. sd(d): standard deviation of the paired "
           "differences; 95% CI: Student t interval of their mean; corr over seeds: Pearson "
           "correlation of the two rows' values by seed.")
  print(results.write(args.name, results.command_line(), rows, COLUMNS, notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
