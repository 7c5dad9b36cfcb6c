"""Is normflows' Glow ahead of ours before training? The step-0 loss over seeds, paired.

For each model seed, our Glow and normflows' Glow (the peer benchmark's workers,
`benchmarks/peers/peer_worker.py` and `normflows_worker.py`, at the peer size) are built with
that seed, initialise their ActNorms on the first batch of one exported training stream (the
same batch for every seed and model) and report their loss on that batch before the first
update, in bits/dim. At that point every coupling is the identity and both priors are standard
normal, so the models differ only in their random 1x1 rotations (and our conditional split
prior, zero at initialisation): a gap that is systematic over seeds is a difference of the
models, one that changes sign is seed luck. Reported: each seed's two losses, and the paired
mean difference (ours - normflows) with its 95% interval. Writes
docs/results/initial_gap.{md,json}.

  python benchmarks/peers/initial_gap.py --seeds 10
  python benchmarks/peers/initial_gap.py --smoke     # digits, tiny models, 2 seeds (the test)
"""

import argparse
import dataclasses
import math
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks.common import intervals  # pylint: disable=g-import-not-at-top
from benchmarks.common import results
from benchmarks.peers import peer_glow
from benchmarks.peers import peer_protocol

SIZES = {"full": dict(dataset="fashion_mnist", levels=2, steps_per_level=8, width=128, batch=64),
         "smoke": dict(dataset="digits", levels=2, steps_per_level=1, width=8, batch=8)}


def step0_loss(model, seed, stream, size, recipe, python):
  """(loss in nats per image on the stream's first batch, before any update) of one worker."""
  settings = {"kind": model, "levels": size["levels"], "steps_per_level": size["steps_per_level"],
              "width": size["width"], "seed": seed, "steps": 1, "recipe": recipe,
              "log_prob_batch": 16, "sample_count": 4, "eval_batch": 256}
  if model == "normflows":
    settings["threads"] = 0
  worker = peer_glow.start_worker(model, stream, settings, python, model)
  try:
    loss = worker.request("train", n=1)["losses"][0]
    worker.close()
  finally:
    worker.kill()
  return loss


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", type=int, default=10, help="model seeds 0..N-1 (default 10)")
  parser.add_argument("--smoke", action="store_true", help="digits, tiny models, 2 seeds")
  parser.add_argument("--torch_python", default=None,
                      help=f"Python of the PyTorch venv (default: ${peer_glow.TORCH_PYTHON_ENV}, "
                           "else .venv-torch/bin/python)")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if args.seeds < 2:
    parser.error(f"--seeds must be >= 2 for an interval, got {args.seeds}")
  size = SIZES["smoke" if args.smoke else "full"]
  seeds = range(2 if args.smoke else args.seeds)
  python = peer_glow.torch_python(args)
  if not os.path.exists(python):
    parser.error(f"no PyTorch venv at {python} (see docs/questions/peers.md, 'Setting up the "
                 "PyTorch peer')")
  recipe = dataclasses.asdict(peer_glow.library_recipe())
  stream = tempfile.mkdtemp(prefix="initial_gap_")
  try:
    meta = peer_protocol.export_stream(stream, size["dataset"], size["batch"], 1, seed=0,
                                       eval_seed=1234, eval_images=16)
    dims = math.prod(meta["image_shape"])

    def bpd(loss):  # the loss is -mean log p(x) in nats over x in [0, 1)^D
      return float(peer_protocol.bits_per_dim(-loss, dims, meta["num_bins"]))

    rows = []
    for seed in seeds:
      losses = {m: bpd(step0_loss(m, seed, stream, size, recipe, python))
                for m in ("ours", "normflows")}
      rows.append({"seed": seed, "ours": losses["ours"], "normflows": losses["normflows"],
                   "ours - normflows": losses["ours"] - losses["normflows"]})
      print(rows[-1], flush=True)
  finally:
    shutil.rmtree(stream, ignore_errors=True)
  paired = intervals.paired_summary([r["ours"] for r in rows], [r["normflows"] for r in rows])
  rows.append({"seed": "mean (95% interval)", "ours - normflows":
               f"{paired['mean']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]"})
  name = "initial_gap" + ("_smoke" if args.smoke else "")
  print(results.write(
      name, results.command_line(), rows, ["seed", "ours", "normflows", "ours - normflows"],
      notes=(f"Loss in bits/dim on the first training batch ({size['dataset']}, batch "
             f"{size['batch']}, data seed 0) after ActNorm's initialisation on it, before any "
             f"update; Glow L={size['levels']}, K={size['steps_per_level']}, width "
             f"{size['width']}, each model built with the seed of its row. ours lower on "
             f"{paired['lower']} of {paired['n']} seeds."),
      results_dir=args.results_dir, details={"paired": paired}))


if __name__ == "__main__":
  main()
