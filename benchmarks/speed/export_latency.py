"""Latency of the exported SavedModel's signatures, loaded with plain TensorFlow.

Exports a freshly initialised Glow (latency does not depend on the weights' values), loads
it with `tf.saved_model.load`, and times `log_prob` for batch 1 and 256 and `sample` for 16
images (median of repeated calls after a warm-up). Writes docs/results/export_latency.*.

  python benchmarks/speed/export_latency.py           # 28x28x1 Glow L=2 K=8 width 128
  python benchmarks/speed/export_latency.py --quick   # 8x8x1 digits-sized Glow L=2 K=4 width 64
  python benchmarks/speed/export_latency.py --smoke   # 8x8x1 Glow L=2 K=1 w8, 2 calls (the test)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import lcflow_tf as lf
from benchmarks.common import results
from lcflow_tf import export


def median_ms(fn, repeats):
  fn()  # warm-up
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1000.0 * statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true")
  mode.add_argument("--smoke", action="store_true",
                    help="a tiny model and few calls: the script runs end to end (the test)")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  mode = "smoke" if args.smoke else "quick" if args.quick else "full"
  size, steps, width, bins = {"full": (28, 8, 128, 256), "quick": (8, 4, 64, 17),
                              "smoke": (8, 1, 8, 17)}[mode]
  repeats = {"full": (30, 5, 10), "quick": (30, 5, 10), "smoke": (2, 2, 2)}[mode]
  flow = lf.build_flow((size, size, 1), architecture="glow", levels=2, steps_per_level=steps,
                       hidden_channels=width, split="random")
  rng = np.random.default_rng(0)
  flow.initialize(rng.random((64, size, size, 1), dtype=np.float32))
  with tempfile.TemporaryDirectory() as tmp:
    path = export.export_saved_model(flow, os.path.join(tmp, "model"), bins)
    model = tf.saved_model.load(path)
    lp = model.signatures["log_prob"]
    sample = model.signatures["sample"]
    one = tf.constant(rng.integers(0, bins, (1, size, size, 1)).astype(np.uint8))
    many = tf.constant(rng.integers(0, bins, (256, size, size, 1)).astype(np.uint8))
    rows = []
    for (name, fn, n), repeat in zip([
        ("log_prob, batch 1", lambda: lp(images=one), 1),
        ("log_prob, batch 256", lambda: lp(images=many), 256),
        ("sample, 16 images", lambda: sample(num=tf.constant(16), temperature=tf.constant(0.7),
                                             seed=tf.constant(0, tf.int64)), 16)], repeats):
      ms = median_ms(fn, repeat)
      rows.append({"signature": name, "median latency (ms)": ms, "images/s": 1000.0 * n / ms})
  print(results.write("export_latency" + ("" if mode == "full" else f"_{mode}"),
                      results.command_line(), rows,
                      ["signature", "median latency (ms)", "images/s"],
                      notes=f"Glow {size}x{size}x1, L=2, K={steps}, width {width}, {bins} bins; "
                            "SavedModel loaded with tf.saved_model.load, signatures called "
                            "eagerly.",
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
