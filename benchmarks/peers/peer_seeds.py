"""Ours against normflows' Glow over seeds: test bits/dim paired by seed, from the peer records.

Reads the records that `benchmarks/peers/peer_glow.py` wrote for a row (default `identical`)
under docs/results/peer_runs/<name>/ for every `--names` entry (one run per seed, e.g.
`peer_glow` for seed 0 and `peer_glow_jit_seed1` for `--seed 1 --name peer_glow_jit_seed1`),
pairs ours with normflows by the seed each record trained with, and reports each seed's test
bits/dim (all test images, averaged weights), the paired mean difference (ours - normflows)
with its 95% Student-t interval, and, at T = 1, non-finite samples and the share of finite
sample pixels outside [-1, 2] where the record has it. Trains nothing. Writes
docs/results/<--output>.{md,json}.

  python benchmarks/peers/peer_seeds.py --names peer_glow,peer_glow_jit_seed1,peer_glow_jit_seed2
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.common import intervals  # pylint: disable=g-import-not-at-top
from benchmarks.common import results
from benchmarks.peers import records

PAIR = ("ours", "normflows")


def read_pair(runs_dir, name, row):
  """{model: record} of `PAIR` in run `name`; ValueError naming what is missing."""
  pair = {}
  for model in PAIR:
    path = records.record_path(os.path.join(runs_dir, name), model, row)
    if not os.path.exists(path):
      raise ValueError(f"--names: run {name!r} has no record {path}")
    with open(path) as f:
      pair[model] = json.load(f)
  seeds = {m: r["config"]["worker"]["seed"] for m, r in pair.items()}
  if len(set(seeds.values())) != 1:
    raise ValueError(f"--names: run {name!r} trained its models with different seeds {seeds}")
  return pair


def seed_row(name, pair):
  row = {"run": name, "seed": pair["ours"]["config"]["worker"]["seed"],
         "ours XLA": bool(pair["ours"]["config"]["worker"].get("jit"))}
  for model, record in pair.items():
    result = record["result"]
    row[f"{model} test bits/dim"] = result["evaluation"]["bpd_all"]
    recon = result["reconstruction"]
    row[f"{model} non-finite samples at T=1"] = (
        f"{recon['samples_nonfinite']} of {recon['n_samples']}")
    outside = recon.get("samples_outside_share")
    row[f"{model} pixels outside [-1, 2]"] = (f"{100 * outside:.3g}%" if outside is not None
                                             else "not recorded")
  row["ours - normflows"] = row["ours test bits/dim"] - row["normflows test bits/dim"]
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--names", required=True,
                      help="comma-separated peer run names (docs/results/peer_runs/<name>)")
  parser.add_argument("--row", default="identical", choices=records.ROWS)
  parser.add_argument("--output", default="peer_seeds", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  results_dir = args.results_dir or results.RESULTS_DIR
  names = [n for n in args.names.split(",") if n]
  try:
    rows = [seed_row(n, read_pair(os.path.join(results_dir, "peer_runs"), n, args.row))
            for n in names]
  except ValueError as e:
    parser.error(str(e))
  seeds = [r["seed"] for r in rows]
  if len(set(seeds)) != len(seeds):
    parser.error(f"--names: each run must have its own seed, got seeds {seeds}")
  paired = intervals.paired_summary([r["ours test bits/dim"] for r in rows],
                                    [r["normflows test bits/dim"] for r in rows])
  interval = ("" if paired["low"] is None
              else f" [{paired['low']:+.4f}, {paired['high']:+.4f}]")
  rows.append({"run": "mean (95% interval)",
               "ours - normflows": f"{paired['mean']:+.4f}{interval}"})
  columns = ["run", "seed", "ours XLA", "ours test bits/dim", "normflows test bits/dim",
             "ours - normflows"] + [f"{m} {what}" for m in PAIR for what in (
                 "non-finite samples at T=1", "pixels outside [-1, 2]")]
  print(results.write(
      args.output, results.command_line(), rows, columns,
      notes=(f"Row {args.row!r}; test bits/dim on all test images with the averaged weights; "
             f"ours lower on {paired['lower']} of {paired['n']} seeds. Each run's models "
             "trained on the same stream (its seed) in alternating turns."),
      results_dir=args.results_dir, details={"paired": paired}))


if __name__ == "__main__":
  main()
