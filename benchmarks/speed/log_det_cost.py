"""What computing log-dets together with the transform saves: before/after, side by side.

Issue 15: `AffineCoupling`'s forward log-det re-ran its network and `FactorOut`'s re-ran the
whole inner flow forward. This script times the same model with the library of this checkout
("after") and with the library of an earlier commit ("before", default the commit before the
fused log-dets; exported with `git archive` into a temporary directory), each in its own
worker process, in alternating rounds, so the machine's drift hits both alike.

Measured, compiled (`tf.function`), on one model built identically in both workers (same seed,
so the same weights; the table checks that both give the same log-densities):
  * sampling with log-prob: TFP's `flow.distribution.experimental_sample_and_log_prob` (the
    only way before), and `Flow.sample_and_log_prob` (after);
  * log_prob: `Flow.log_prob` (the inverse pass, fused before and after) and TFP's
    `flow.distribution.log_prob` (which calls the chain's inverse, then its forward log-det);
  * sampling alone: `Flow.sample`.
Besides images/s, each path's network runs per call: the Conv2D ops in its traced graph over
those of one run of every coupling and prior network.

  python benchmarks/speed/log_det_cost.py              # Fashion-MNIST Glow L=2 K=4 w32 (small)
  python benchmarks/speed/log_det_cost.py --peer_size  # Fashion-MNIST Glow L=2 K=8 w128
  python benchmarks/speed/log_det_cost.py --smoke      # 8x8 digits, tiny model (seconds)
  python benchmarks/speed/log_det_cost.py --before_commit <commit>
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.common import procs  # pylint: disable=g-import-not-at-top

SCRIPT = os.path.abspath(__file__)
BEFORE_COMMIT = "588bc04"  # main before the fused log-dets (issue 15)
SIDES = ("before", "after")
MODES = {
    "small": dict(dataset="fashion_mnist", levels=2, steps_per_level=4, width=32,
                  log_prob_batch=256, sample_count=64, rounds=6, repeats=5),
    "peer_size": dict(dataset="fashion_mnist", levels=2, steps_per_level=8, width=128,
                      log_prob_batch=256, sample_count=64, rounds=4, repeats=3),
    "smoke": dict(dataset="digits", levels=2, steps_per_level=2, width=8, log_prob_batch=16,
                  sample_count=8, rounds=2, repeats=2),
}
# path -> (label, what one call processes: "log_prob" batch or "sample" count)
PATHS = {
    "tfp_sample_and_log_prob": ("sampling with log-prob: TFP's "
                                "distribution.experimental_sample_and_log_prob", "sample"),
    "flow_sample_and_log_prob": ("sampling with log-prob: Flow.sample_and_log_prob", "sample"),
    "flow_log_prob": ("log_prob: Flow.log_prob", "log_prob"),
    "tfp_log_prob": ("log_prob: TFP's distribution.log_prob", "log_prob"),
    "flow_sample": ("sampling: Flow.sample", "sample"),
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--peer_size", action="store_true",
                    help="the peer benchmark's model (L=2, K=8, width 128), fewer rounds")
  mode.add_argument("--smoke", action="store_true", help="8x8 digits, a tiny model")
  parser.add_argument("--before_commit", default=BEFORE_COMMIT,
                      help="git commit whose lcflow_tf is 'before' (default: main before the "
                           "fused log-dets)")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--library_root", default=ROOT, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  args.mode = "smoke" if args.smoke else "peer_size" if args.peer_size else "small"
  return args


# ------------------------------------------------------------------------- worker


def paths(flow, images, n):
  """name -> compiled call (`tf.function`) of each timed path of `flow` (see `PATHS`).

  `Flow.sample_and_log_prob` only where the library has it (not before the fused log-dets).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  calls = {
      "tfp_sample_and_log_prob": lambda: flow.distribution.experimental_sample_and_log_prob(
          n, seed=(1, 2))[1],
      "flow_log_prob": lambda: flow.log_prob(images),
      "tfp_log_prob": lambda: flow.distribution.log_prob(images),
      "flow_sample": lambda: flow.sample(n, seed=1),
  }
  if hasattr(flow, "sample_and_log_prob"):
    calls["flow_sample_and_log_prob"] = lambda: flow.sample_and_log_prob(n, seed=1)[1]
  return {name: tf.function(fn) for name, fn in calls.items()}


def network_runs(flow, compiled):
  """name -> how often each network of `flow` runs per call of `compiled[name]`.

  The Conv2D ops in the path's traced graph over those of one run of every coupling and prior
  network (1.0: each network once).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def convolutions(fn):
    graph = fn.get_concrete_function().graph
    return sum(op.type == "Conv2D" for op in graph.get_operations())

  nets = {id(net): net for m in flow.bijector.submodules for net in getattr(m, "networks", ())}
  one_pass = convolutions(tf.function(lambda: [
      net(tf.zeros((1, 2, 2, net.inputs[0].shape[-1]))) for net in nets.values()]))
  return {name: convolutions(fn) / one_pass for name, fn in compiled.items()}


def worker(args):
  """Builds the model with the lcflow_tf under --library_root; serves timing requests."""
  sys.path.insert(0, args.library_root)
  import keras  # pylint: disable=g-import-not-at-top
  import lcflow_tf as lf  # pylint: disable=g-import-not-at-top
  from lcflow_tf import data  # pylint: disable=g-import-not-at-top

  settings = MODES[args.mode]
  dataset = data.load_dataset(settings["dataset"])
  images = next(iter(data.make_eval_pipeline(dataset.test(), settings["log_prob_batch"],
                                             dataset.num_bins, seed=0)))
  keras.utils.set_random_seed(0)
  flow = lf.build_flow(dataset.image_shape, architecture="glow", levels=settings["levels"],
                       steps_per_level=settings["steps_per_level"],
                       hidden_channels=settings["width"], seed=0)
  flow.initialize(images)
  compiled = paths(flow, images, settings["sample_count"])

  warm = set()

  def timed(name, repeats):
    fn = compiled[name]
    if name not in warm:  # the first call traces
      fn().numpy()
      warm.add(name)
    seconds = []
    for _ in range(repeats):
      start = time.perf_counter()
      fn().numpy()
      seconds.append(time.perf_counter() - start)
    return {"seconds": seconds}

  procs.serve(
      {"library": os.path.dirname(lf.__file__), "paths": list(compiled),
       "network_runs": network_runs(flow, compiled),
       "log_prob": [float(v) for v in compiled["flow_log_prob"]().numpy()],
       "images": [int(images.shape[0])] + list(dataset.image_shape)},
      {"time": timed})


# ------------------------------------------------------------------------- parent


def export_library(commit, directory):
  """Writes lcflow_tf/ of `commit` (git archive) into `directory`."""
  archive = subprocess.run(["git", "-C", ROOT, "archive", commit, "lcflow_tf"],
                           capture_output=True, check=False)
  if archive.returncode != 0:
    raise SystemExit(f"error: git archive {commit} lcflow_tf failed: "
                     f"{archive.stderr.decode().strip()}")
  subprocess.run(["tar", "-x", "-C", directory], input=archive.stdout, check=True)
  return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", commit], capture_output=True,
                        text=True, check=True).stdout.strip()


def measure(args):
  settings = MODES[args.mode]
  before_root = tempfile.mkdtemp(prefix="lcflow_before_")
  workers = {}
  try:
    commit = export_library(args.before_commit, before_root)
    flags = [f"--{args.mode}"] if args.mode != "small" else []
    for side, root in (("before", before_root), ("after", ROOT)):
      workers[side] = procs.Worker(SCRIPT, flags + ["--worker", "--library_root", root], side)
    ready = {side: w.ready for side, w in workers.items()}
    for side in SIDES:
      print(f"[{side}] {ready[side]['library']}: network runs per call "
            f"{ready[side]['network_runs']}", flush=True)
    timings = {side: {p: [] for p in ready[side]["paths"]} for side in SIDES}
    # Call by call, the sides alternating (first side alternating too), so that the load of
    # the shared machine, which can change several-fold within seconds, hits both alike.
    for r in range(settings["rounds"]):
      for path in PATHS:
        for k in range(settings["repeats"]):
          for side in (SIDES if (r + k) % 2 == 0 else SIDES[::-1]):
            if path in timings[side]:
              timings[side][path] += workers[side].request("time", name=path,
                                                           repeats=1)["seconds"]
      print(f"round {r + 1}/{settings['rounds']} done", flush=True)
    for w in workers.values():
      w.close()
  finally:
    for w in workers.values():
      w.kill()
    shutil.rmtree(before_root, ignore_errors=True)
  return commit, ready, timings


def report(args, commit, ready, timings):
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  settings = MODES[args.mode]
  count = {"log_prob": settings["log_prob_batch"], "sample": settings["sample_count"]}

  def rate(side, path):
    if path not in timings[side]:
      return None
    return count[PATHS[path][1]] / statistics.median(timings[side][path])

  comparisons = [  # (row, path before, path after)
      ("sampling with log-prob: TFP's experimental_sample_and_log_prob before, "
       "Flow.sample_and_log_prob after", "tfp_sample_and_log_prob", "flow_sample_and_log_prob"),
      *((PATHS[path][0], path, path) for path in ("tfp_sample_and_log_prob", "flow_log_prob",
                                                  "tfp_log_prob", "flow_sample")),
  ]
  rows = []
  for label, before, after in comparisons:
    b, a = rate("before", before), rate("after", after)
    rows.append({
        "path": label, "before images/s": b, "after images/s": a,
        "after / before": a / b if a and b else "",
        "network runs per call, before": ready["before"]["network_runs"][before],
        "network runs per call, after": ready["after"]["network_runs"][after]})
  diff = max(abs(x - y) for x, y in zip(ready["before"]["log_prob"], ready["after"]["log_prob"]))
  shape = ready["after"]["images"]
  notes = (
      f"{settings['dataset']} {'x'.join(map(str, shape[1:]))}, Glow L={settings['levels']}, "
      f"K={settings['steps_per_level']}, width {settings['width']} (build_flow defaults "
      "otherwise), freshly initialised (ActNorm on the first test batch; Keras seed 0, so "
      "both workers hold the same weights: max |log_prob before - after| over the batch = "
      f"{diff:.3g} nats). Before: lcflow_tf of commit {commit} (git archive); after: this "
      f"checkout. Each in its own process, compiled with tf.function; log_prob on a batch of "
      f"{count['log_prob']} test images, sampling {count['sample']} images per call; median "
      f"of {settings['rounds']} rounds x {settings['repeats']} calls per path after a "
      "warm-up call, the two sides alternating call by call; Flow.log_prob and Flow.sample "
      "run the same networks before and after, so their after/before ratio shows what the "
      "machine's noise alone does to a ratio. Network runs per call: Conv2D ops in the "
      "traced graph over those of one run of every coupling and prior network (1 = each "
      "network once). TFP's paths call the chain's forward (or inverse) and then its log-det "
      "separately, and tfb.Chain's forward log-det calls each part's forward again: without "
      "TFP's tensor cache (which this library bypasses: its variables change during "
      "training) a network runs once per such call; before the change each part's forward "
      "log-det also re-ran networks (a coupling's its own, a junction's the whole inner flow "
      "forward).")
  name = "log_det_cost" + ("" if args.mode == "small" else f"_{args.mode}")
  print(results.write(name, results.command_line(), rows,
                      ["path", "before images/s", "after images/s", "after / before",
                       "network runs per call, before", "network runs per call, after"],
                      notes=notes, results_dir=args.results_dir,
                      details={"seconds": timings, "ready": ready, "settings": settings}))


def main():
  args = parse_args()
  if args.worker:
    worker(args)
    return
  report(args, *measure(args))


if __name__ == "__main__":
  main()
