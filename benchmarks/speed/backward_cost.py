"""What the backward pass costs against the forward pass, in wall time, at the peer size.

The op-time profile of the training step (`benchmarks/speed/profile_step.py`) sums the
durations of the ops it traces; where independent ops run at once on the executor's threads
(the backward pass has the input and the filter gradient of every convolution) their durations
overlap and the sum exceeds the wall time. This measures wall times instead, alternating in
rounds in one process, median of the rounds:
  * the whole model (Glow 28x28x1, L=2, K=8, width 128, batch 64, not XLA): `log_prob`
    against `log_prob` + the gradient of the mean loss;
  * one coupling network of each level alone (Keras, zero-initialised last layer given
    weights): forward against forward + the gradient to its input and weights;
  * each convolution of those networks alone: forward, gradient to the input, gradient to the
    filter (`tf.raw_ops.Conv2DBackpropInput/Filter`), with its GFLOP/s;
  * a 2048 x 2048 float32 matmul, the machine's reference rate in the same run.
Writes docs/results/backward_cost.{md,json}.

  python benchmarks/speed/backward_cost.py
  python benchmarks/speed/backward_cost.py --smoke   # a tiny model, 1 round (the test)
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # pylint: disable=g-import-not-at-top
import tensorflow as tf

import lcflow_tf as lf
from benchmarks.common import results
from lcflow_tf import networks

# (label, height, input channels, output channels) of the coupling networks at the peer size:
# level 0 conditions on 2 of the 4 channels of the 14x14 squeeze, level 1 on 4 of 8 at 7x7.
PEER_NETWORKS = (("level 0", 14, 2, 4), ("level 1", 7, 4, 8))


def median_ms(fns, rounds, inner):
  """{name: median over `rounds` of the mean ms of `inner` calls}, the calls alternating."""
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      for _ in range(inner):
        out = fn()
      tf.nest.flatten(out)[0].numpy()
      times[name].append((time.perf_counter() - start) / inner * 1e3)
  return {name: statistics.median(v) for name, v in times.items()}


def model_rows(size, steps, width, batch, rounds):
  keras.utils.set_random_seed(0)
  flow = lf.build_flow((size, size, 1), levels=2, steps_per_level=steps, hidden_channels=width)
  x = tf.random.uniform([batch, size, size, 1], seed=1)
  flow.initialize(x)
  variables = flow.trainable_variables

  @tf.function(autograph=False)
  def forward():
    return flow.log_prob(x)

  @tf.function(autograph=False)
  def forward_backward():
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    return tape.gradient(loss, variables)

  t = median_ms({"forward": forward, "forward+backward": forward_backward}, rounds, 3)
  return [{"what": f"whole model (L=2 K={steps} width {width}, batch {batch})",
           "forward ms": t["forward"], "backward ms": t["forward+backward"] - t["forward"],
           "backward / forward": (t["forward+backward"] - t["forward"]) / t["forward"]}]


def network_rows(width, batch, rounds, shapes):
  rows = []
  for label, height, n_in, n_out in shapes:
    keras.utils.set_random_seed(0)
    net = networks.glow_network(n_in, n_out, width)
    for v in net.trainable_variables:  # the zero-initialised last layer would pass no gradient
      v.assign(tf.random.normal(v.shape, seed=2) * 0.05)
    x = tf.random.normal([batch, height, height, n_in], seed=3)
    weights = list(net.trainable_variables)

    @tf.function(autograph=False)
    def forward():
      return net(x)

    @tf.function(autograph=False)
    def forward_backward():
      with tf.GradientTape() as tape:
        tape.watch(x)
        y = net(x)
        loss = tf.reduce_sum(y * y)
      return tape.gradient(loss, [x] + weights)

    t = median_ms({"forward": forward, "forward+backward": forward_backward}, rounds, 5)
    rows.append({"what": f"coupling network, {label} ({height}x{height}, {n_in}->{width}->"
                         f"{width}->{n_out})",
                 "forward ms": t["forward"], "backward ms": t["forward+backward"] - t["forward"],
                 "backward / forward": (t["forward+backward"] - t["forward"]) / t["forward"]})
    rows += conv_rows(label, height, n_in, n_out, width, batch, rounds)
  return rows


def conv_rows(label, height, n_in, n_out, width, batch, rounds):
  rows = []
  for c_in, c_out, k in ((n_in, width, 3), (width, width, 1), (width, n_out, 3)):
    x = tf.random.normal([batch, height, height, c_in], seed=4)
    f = tf.random.normal([k, k, c_in, c_out], seed=5) * 0.1
    dy = tf.random.normal([batch, height, height, c_out], seed=6)
    fns = {
        "forward": tf.function(lambda x=x, f=f: tf.nn.conv2d(x, f, 1, "SAME")),
        "input": tf.function(lambda x=x, f=f, dy=dy: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=f, out_backprop=dy, strides=[1, 1, 1, 1],
            padding="SAME")),
        "filter": tf.function(lambda x=x, f=f, dy=dy: tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(f), out_backprop=dy, strides=[1, 1, 1, 1],
            padding="SAME")),
    }
    t = median_ms(fns, rounds, 5)
    gflop = 2.0 * batch * height * height * c_in * c_out * k * k / 1e9
    rows.append({"what": f"  conv {k}x{k} {c_in}->{c_out}, {label}", "forward ms": t["forward"],
                 "backward ms": t["input"] + t["filter"],
                 "backward / forward": (t["input"] + t["filter"]) / t["forward"],
                 "GFLOP/s forward / input grad / filter grad": " / ".join(
                     f"{gflop / t[n] * 1e3:.0f}" for n in ("forward", "input", "filter"))})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="a tiny model and one round: the script runs end to end (the test)")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if args.smoke:
    size, steps, width, batch, rounds = 8, 1, 8, 8, 1
    shapes = (("level 0", 4, 2, 4),)
  else:
    size, steps, width, batch, rounds = 28, 8, 128, 64, 7
    shapes = PEER_NETWORKS
  a = tf.random.normal([2048, 2048], seed=7)
  matmul = tf.function(lambda: tf.matmul(a, a))
  reference = 2 * 2048 ** 3 / 1e9 / median_ms({"m": matmul}, rounds, 5)["m"] * 1e3
  rows = model_rows(size, steps, width, batch, rounds) + network_rows(width, batch, rounds,
                                                                      shapes)
  rows.append({"what": "2048 x 2048 float32 matmul (the machine's rate in this run)",
               "GFLOP/s forward / input grad / filter grad": f"{reference:.0f}"})
  name = "backward_cost" + ("_smoke" if args.smoke else "")
  print(results.write(
      name, results.command_line(), rows,
      ["what", "forward ms", "backward ms", "backward / forward",
       "GFLOP/s forward / input grad / filter grad"],
      notes=("Wall times, median of the rounds, the variants alternating in one process (not "
             "XLA). backward = (forward + backward) - forward; for a convolution, the input "
             "gradient plus the filter gradient timed alone."),
      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
