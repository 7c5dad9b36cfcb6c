"""Training cost of our Glow against image size and depth, and the fraction of the machine used.

For 3-channel images (as in CIFAR-like use) of side 8, 16, 32 and 64 and K = 2, 4, 8 steps per
level (Glow, L=2 levels at every size, width 64, batch 16), each configuration runs in its own
worker process, so its peak memory is that process's max RSS. The worker times compiled
training steps (Adam; synthetic images in [0, 1), since the cost does not depend on the
values) and counts the FLOPs of one step with TensorFlow's profiler
(`tf.compat.v1.profiler.profile` with `ProfileOptionBuilder.float_operation()`) on the graph
of the traced step; the conditioner and prior convolutions, which dominate, are also counted
analytically from their shapes as a check. FLOPs / step time is compared with the FLOP/s of
a large float32 matmul measured by the parent in the same run (before and after the sweep).
Expected: cost linear in pixels and in depth, i.e. a flat "ns per image pixel per K".
Writes docs/results/scaling{suffix}.{json,md}, suffix "", "_quick" or "_smoke" (+ "_jit").

  python benchmarks/speed/scaling.py          # 4 sizes x 3 depths, ~10 s timed per configuration
  python benchmarks/speed/scaling.py --quick  # sizes 8, 16, 32 x K 2, 4, ~3 s timed each
  python benchmarks/speed/scaling.py --smoke  # one tiny configuration (the test)
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import lcflow_tf as lf
from benchmarks.common import harness
from benchmarks.common import results

SCRIPT = os.path.abspath(__file__)
MODES = {
    "full": dict(sizes=(8, 16, 32, 64), ks=(2, 4, 8), width=64, batch=16, seconds=10.0,
                 min_steps=5, matmul_size=2048, matmul_seconds=3.0),
    "quick": dict(sizes=(8, 16, 32), ks=(2, 4), width=64, batch=16, seconds=3.0, min_steps=3,
                  matmul_size=2048, matmul_seconds=1.0),
    "smoke": dict(sizes=(8,), ks=(1,), width=8, batch=2, seconds=0.0, min_steps=2,
                  matmul_size=256, matmul_seconds=0.1),
}
CONV_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
CONDITIONER_SCOPE = "glow_conditioner"  # lcflow_tf.networks.glow_conditioner's name scope


def _int_list(text):
  try:
    values = tuple(int(v) for v in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
  return values


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true", help="a subset: sizes 8,16,32 x K 2,4")
  mode.add_argument("--smoke", action="store_true", help="one tiny configuration (the test)")
  parser.add_argument("--sizes", type=_int_list, help="image sides, e.g. 8,16,32,64")
  parser.add_argument("--ks", type=_int_list, help="steps per level K, e.g. 2,4,8")
  parser.add_argument("--channels", type=int, default=3, help="image channels (default 3)")
  parser.add_argument("--levels", type=int, default=2, help="L, Glow levels (default 2)")
  parser.add_argument("--width", type=int, help="hidden channels of the couplings (default 64)")
  parser.add_argument("--batch", type=int, help="batch size (default 16)")
  parser.add_argument("--seconds", type=float,
                      help="time each configuration's training steps for at least this long")
  parser.add_argument("--jit", action="store_true", help="XLA-compile the training step")
  parser.add_argument("--results_dir", default=results.RESULTS_DIR,
                      help="where the JSON and Markdown results go (default docs/results)")
  parser.add_argument("--worker", type=_int_list, help=argparse.SUPPRESS)  # size,K
  args = parser.parse_args(argv)
  args.mode = "smoke" if args.smoke else "quick" if args.quick else "full"
  for key, value in MODES[args.mode].items():
    if getattr(args, key, None) is None:
      setattr(args, key, value)
  for key in ("channels", "levels", "width", "batch"):
    if getattr(args, key) < 1:
      parser.error(f"--{key} must be >= 1, got {getattr(args, key)}")
  bad = [s for s in args.sizes if s % 2 ** args.levels]
  if bad:
    parser.error(f"--sizes {bad} are not divisible by 2**levels = {2 ** args.levels}")
  return args


def analytic_conv_flops(size, channels, levels, k, width, batch):
  """FLOPs of the forward convolutions of a Glow's conditioners and split priors, by formula.

  A k x k convolution from c_in to c_out channels on an h x w map costs 2 k^2 c_in c_out h w
  per image. Level l squeezes its input to (h, w, c) = (S / 2^(l+1), S / 2^(l+1), 4 c_l)
  (c_0 = image channels, c_(l+1) = c / 2); each of its K couplings runs conv3x3 (c/2 -> width),
  conv1x1 (width -> width), conv3x3 (width -> 2 * c/2); each split runs a conv3x3
  (c/2 -> c) prior. The training step runs every convolution forward and twice backward
  (input and filter gradients, at the same cost), so its convolution FLOPs are 3x this.
  """
  total, c_level = 0, channels
  for level in range(levels):
    h = size // 2 ** (level + 1)
    c = 4 * c_level
    n_in, n_out = c // 2, 2 * (c - c // 2)
    per_pixel = k * (9 * n_in * width + width * width + 9 * width * n_out)
    if level < levels - 1:
      per_pixel += 9 * (c // 2) * c
    total += 2 * per_pixel * h * h * batch
    c_level = c // 2
  return total


def counted_flops(graph):
  """(all FLOPs the profiler counts, its count for convolutions, op types it has no rule for).

  The convolutions include the matrix products by which `lcflow_tf.networks.GlowConditioner`
  evaluates its convolutions (ops under its `glow_conditioner` name scope), which cost what
  the convolutions would.
  """
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  total = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
  from tensorflow.python.framework import ops  # pylint: disable=g-import-not-at-top
  conv, missing = 0, set()
  for op in graph.get_operations():
    try:
      value = ops.get_stats_for_node_def(graph, op.node_def, "flops").value
    except ValueError:
      value = None
    if value is None:
      missing.add(op.type)
    elif op.type in CONV_TYPES or (op.type == "MatMul" and CONDITIONER_SCOPE in op.name):
      conv += value
  return int(total), int(conv), sorted(missing)


def worker(args):
  """Builds and times one configuration; answers with its measurements."""
  size, k = args.worker
  baseline = harness.current_rss_mb()
  tf.get_logger().setLevel("ERROR")  # the v1 profiler's deprecation warnings
  shape = (size, size, args.channels)
  flow = lf.build_flow(shape, architecture="glow", levels=args.levels, steps_per_level=k,
                       hidden_channels=args.width, split="static")
  rng = np.random.default_rng(0)
  batches = [tf.constant(rng.random((args.batch,) + shape, dtype=np.float32)) for _ in range(4)]
  flow.initialize(batches[0])
  variables = flow.trainable_variables
  optimizer = keras.optimizers.Adam(1e-4)
  optimizer.build(variables)
  train_step = harness.nll_train_step(flow, optimizer, jit_compile=args.jit)

  start = time.perf_counter()
  graph = train_step.get_concrete_function(tf.TensorSpec(batches[0].shape, tf.float32)).graph
  trace_s = time.perf_counter() - start
  for x in batches[:2]:
    train_step(x).numpy()  # warm up

  times, start = [], time.perf_counter()
  while len(times) < args.min_steps or time.perf_counter() - start < args.seconds:
    t = time.perf_counter()
    loss = train_step(batches[len(times) % len(batches)]).numpy()
    times.append(time.perf_counter() - t)
  peak_training = harness.peak_rss_mb()  # before the FLOP count, which needs memory of its own
  steady = harness.current_rss_mb()
  flops, conv_flops, uncounted = counted_flops(graph)
  analytic = 3 * analytic_conv_flops(size, args.channels, args.levels, k, args.width, args.batch)
  harness.serve({
      "size": size, "k": k, "step_s": statistics.median(times),
      "mean_step_s": statistics.mean(times), "steps": len(times), "trace_s": trace_s,
      "flops": flops, "conv_flops": conv_flops, "analytic_conv_flops": analytic,
      "uncounted_op_types": uncounted,
      "parameters": int(sum(np.prod(v.shape) for v in variables)), "baseline_rss_mb": baseline,
      "training_peak_rss_mb": peak_training, "training_rss_mb": steady,
      "finite_loss": bool(np.isfinite(loss))}, {})


def matmul_flops_per_s(n, seconds):
  """(best, median) FLOP/s of an n x n float32 matmul, compiled, repeated for `seconds`."""
  rng = np.random.default_rng(0)
  a = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
  b = tf.constant(rng.standard_normal((n, n), dtype=np.float32))
  matmul = tf.function(tf.matmul)
  matmul(a, b).numpy()
  times, start = [], time.perf_counter()
  while len(times) < 3 or time.perf_counter() - start < seconds:
    t = time.perf_counter()
    matmul(a, b).numpy()
    times.append(time.perf_counter() - t)
  flop = 2.0 * n ** 3
  return flop / min(times), flop / statistics.median(times)


def main():
  args = parse_args()
  if args.worker:
    worker(args)
    return
  matmul_before = matmul_flops_per_s(args.matmul_size, args.matmul_seconds)
  configs = [(s, k) for k in args.ks for s in args.sizes]
  answers = []
  for size, k in configs:
    worker_args = sys.argv[1:] + ["--worker", f"{size},{k}"]
    answer = harness.run_worker(SCRIPT, worker_args, f"{size}x{size} K={k}")
    answers.append(answer)
    print(f"{size}x{size}x{args.channels} K={k}: {1000 * answer['step_s']:.1f} ms/step, "
          f"peak RSS {answer['training_peak_rss_mb']:.0f} MB", flush=True)
  matmul_after = matmul_flops_per_s(args.matmul_size, args.matmul_seconds)
  peak = max(matmul_before[0], matmul_after[0])

  rows = []
  for a in answers:
    size, k, step = a["size"], a["k"], a["step_s"]
    flop_rate = a["flops"] / step
    rows.append({
        "image": f"{size}x{size}x{args.channels}", "K": k, "ms/step": 1000.0 * step,
        "images/s": args.batch / step,
        "ns per image pixel per K": 1e9 * step / (args.batch * size * size * k),
        "GFLOP/step": a["flops"] / 1e9, "GFLOP/s": flop_rate / 1e9,
        "% of matmul FLOP/s": 100.0 * flop_rate / peak,
        "peak RSS MB": a["training_peak_rss_mb"],
        "peak above start MB": a["training_peak_rss_mb"] - a["baseline_rss_mb"],
        "RSS while training MB": a["training_rss_mb"],
        "peak RSS incl. FLOP count MB": a["peak_rss_mb"],
        "steps timed": a["steps"], "trace s": a["trace_s"], "parameters": a["parameters"],
        "conv GFLOP/step (profiler)": a["conv_flops"] / 1e9,
        "conv GFLOP/step (analytic)": a["analytic_conv_flops"] / 1e9,
        "uncounted op types": a["uncounted_op_types"], "finite loss": a["finite_loss"]})
  mismatch = max(abs(a["conv_flops"] - a["analytic_conv_flops"]) / a["analytic_conv_flops"]
                 for a in answers)
  conv_share = statistics.mean(a["conv_flops"] / a["flops"] for a in answers)
  notes = (
      f"Glow, L={args.levels} at every size, width {args.width}, batch {args.batch}, "
      f"{args.channels}-channel synthetic images, Adam"
      f"{', XLA (--jit)' if args.jit else ''}; each configuration in its own process (peak "
      "RSS = its max RSS up to the end of the timed steps, tracing included; 'above start' "
      "subtracts the RSS after imports; for small models it is set by TensorFlow's own "
      "start-up and tracing). Step time: median "
      f"over >= {args.seconds:g} s of compiled steps after warm-up. 'ns per image pixel per "
      "K' = step time / (batch x H x W x K): flat when the cost is linear in pixels and "
      "depth. FLOPs: counted by tf.compat.v1.profiler (float_operation) on the traced "
      "training step's graph; it has rules for convolutions (forward and both gradients), "
      "matmuls (the 1x1 convolutions are one), BiasAdd and common elementwise ops, none for "
      "exp/sigmoid/softplus/ReLU, so the count is a slight lower bound; convolutions are "
      f"{100 * conv_share:.1f}% of it on average, and the profiler's convolution count "
      f"matches 3x the analytic forward count of the conditioner and prior convolutions "
      f"within {100 * mismatch:.2g}%. Machine reference: {args.matmul_size}x"
      f"{args.matmul_size} float32 matmul, best {matmul_before[0] / 1e9:.1f} GFLOP/s "
      f"(median {matmul_before[1] / 1e9:.1f}) before the sweep and best "
      f"{matmul_after[0] / 1e9:.1f} (median {matmul_after[1] / 1e9:.1f}) after; the "
      f"percentages use the better best, {peak / 1e9:.1f} GFLOP/s.")
  suffix = {"full": "", "quick": "_quick", "smoke": "_smoke"}[args.mode] + (
      "_jit" if args.jit else "")
  columns = ["image", "K", "ms/step", "images/s", "ns per image pixel per K", "GFLOP/step",
             "GFLOP/s", "% of matmul FLOP/s", "peak RSS MB", "peak above start MB"]
  matmul = {"size": args.matmul_size, "before_best_median": matmul_before,
            "after_best_median": matmul_after, "reference": peak}
  print(results.write("scaling" + suffix, results.command_line(), rows, columns,
                      notes=notes, results_dir=args.results_dir,
                      details={"matmul_flops_per_s": matmul, "conv_count_mismatch": mismatch}))


if __name__ == "__main__":
  main()
