"""Cost of collecting likelihood-contribution statistics inside the training step.

Times two compiled training steps on the same model and batches, alternating in rounds:
plain (`log_prob` -> loss -> Adam) and with statistics (`log_prob_and_lc_batch` -> loss ->
Adam -> `lc_statistics.update`). Writes docs/results/lc_overhead.{json,md}.

  python benchmarks/speed/lc_overhead.py            # Fashion-MNIST-sized Glow, L=2 K=8 width 128
  python benchmarks/speed/lc_overhead.py --quick
  python benchmarks/speed/lc_overhead.py --smoke    # K=1 width 8, batch 8, 2 rounds of 2 (the test)
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


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true")
  mode.add_argument("--smoke", action="store_true",
                    help="a tiny model and few steps: the script runs end to end (the test)")
  parser.add_argument("--jit", action="store_true", help="XLA-compile the steps")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  mode = "smoke" if args.smoke else "quick" if args.quick else "full"
  size, levels, steps, width, batch = {"full": (28, 2, 8, 128, 64), "quick": (8, 2, 4, 32, 64),
                                       "smoke": (8, 2, 1, 8, 8)}[mode]
  rounds, per_round = {"full": (5, 10), "quick": (5, 20), "smoke": (2, 2)}[mode]
  flow = lf.build_flow((size, size, 1), architecture="glow", levels=levels,
                       steps_per_level=steps, hidden_channels=width, split="lc")
  rng = np.random.default_rng(0)
  data = rng.random((8, batch, size, size, 1), dtype=np.float32)
  flow.initialize(data[0])
  variables = flow.trainable_variables
  optimizer = keras.optimizers.Adam(1e-4)
  plain = harness.nll_train_step(flow, optimizer, jit_compile=args.jit)

  @tf.function(jit_compile=args.jit)
  def with_stats(x):
    with tf.GradientTape() as tape:
      log_prob, sums = flow.log_prob_and_lc_batch(x)
      loss = -tf.reduce_mean(log_prob)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss, sums

  def timed(step, collect):
    start = time.perf_counter()
    for i in range(per_round):
      out = step(data[i % len(data)])
      if collect:
        flow.lc_statistics.update(out[1])
    float((out[0] if collect else out).numpy())
    return (time.perf_counter() - start) / per_round

  timed(plain, False), timed(with_stats, True)  # trace and warm up
  times = {"plain": [], "with_statistics": []}
  for _ in range(rounds):
    times["plain"].append(timed(plain, False))
    times["with_statistics"].append(timed(with_stats, True))
  med = {k: statistics.median(v) for k, v in times.items()}
  overhead = 100.0 * (med["with_statistics"] / med["plain"] - 1.0)
  rows = [{"step": k, "median s/step": med[k], "images/s": batch / med[k],
           "all rounds (s/step)": ", ".join(f"{t:.4f}" for t in v)} for k, v in times.items()]
  rows.append({"step": "overhead", "median s/step": f"{overhead:+.1f}%"})
  name = "lc_overhead" + ("" if mode == "full" else f"_{mode}") + ("_jit" if args.jit else "")
  print(results.write(
      name, results.command_line(), rows,
      ["step", "median s/step", "images/s", "all rounds (s/step)"],
      notes=(f"Glow {size}x{size}x1, L={levels}, K={steps}, width {width}, batch {batch}; "
             f"{rounds} alternating rounds of {per_round} steps; target: overhead <= 10%."),
      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
