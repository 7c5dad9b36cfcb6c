"""How fast the training step is with Glow's conditioner as Conv2D layers or a GlowConditioner.

At the peer size (Glow on Fashion-MNIST, L=2, K=8, width 128, batch 64, the peer benchmark's
training step `benchmarks.peers.peer_models.Trainer` with its default recipe) four trainers
run in one process, in alternating turns of `--turn_steps` steps, on the same four batches:
  * Conv2D layers: the conditioners evaluated layer by layer (`keras.Sequential.call`);
  * GlowConditioner: the library's evaluation (`lcflow_tf.networks.glow_conditioner`: the 1x1
    convolution as a matrix product, and under XLA the 3x3 ones too);
each without and with XLA (`jit_compile` on the whole step, as `train.py --jit`). Reported:
median images/s over the rounds, the first step's seconds (tracing and compiling), the step's
GFLOP (counted by TensorFlow's profiler on the step's forward + backward graph, conv kernels)
and GFLOP/s, and a 2048 x 2048 float32 matmul timed in every round, the machine's reference
rate in the same run. Then the same trained weights are evaluated both ways: test bits/dim of
the first 1000 test images, largest difference per image. Writes
docs/results/conditioner_speed.{md,json}.

  python benchmarks/speed/conditioner_speed.py
  python benchmarks/speed/conditioner_speed.py --smoke   # tiny model, 1 round (the test)
"""

import argparse
import contextlib
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import lcflow_tf as lf
from benchmarks.common import results
from benchmarks.peers import peer_models
from benchmarks.peers import peer_protocol
from lcflow_tf import networks

EVALUATIONS = ("Conv2D layers", "GlowConditioner")


def build_trainer(evaluation, jit, image_shape, levels, steps, width, train_steps):
  """A peer-benchmark trainer whose conditioners are evaluated by `evaluation`."""
  model = peer_models.build("ours", image_shape, levels, steps, width, 0)
  if evaluation == EVALUATIONS[0]:
    use_conv2d(model.bijector)
  return peer_models.Trainer(model, peer_protocol.Recipe(), train_steps, jit=jit)


@contextlib.contextmanager
def products_everywhere():
  """While inside, `glow_conditioner` evaluates all three convolutions as products."""
  original = networks.glow_conditioner
  networks.glow_conditioner = functools.partial(original, products=True)
  try:
    yield
  finally:
    networks.glow_conditioner = original


def use_conv2d(bijector):
  """Makes every `GlowConditioner` under `bijector` call its `Conv2D` layers one by one."""
  conditioners = [n for m in bijector.submodules for n in getattr(m, "networks", ())
                  if isinstance(n, networks.GlowConditioner)]
  if not conditioners:
    raise ValueError("use_conv2d: the model has no GlowConditioner")
  for net in conditioners:  # the instance attribute shadows GlowConditioner.call
    net.call = keras.Sequential.call.__get__(net)
  return conditioners


def step_gflop(image_shape, levels, steps, width, batch):
  """GFLOP of one training step's forward + backward pass, counted by TensorFlow's profiler."""
  keras.utils.set_random_seed(0)
  flow = lf.build_flow(image_shape, levels=levels, steps_per_level=steps, hidden_channels=width,
                       split="static")
  use_conv2d(flow.bijector)
  x = tf.random.uniform([batch, *image_shape], seed=1)
  flow.initialize(x)
  variables = flow.trainable_variables

  @tf.function
  def forward_backward(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    return tape.gradient(loss, variables)

  graph = forward_backward.get_concrete_function(tf.TensorSpec(x.shape)).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  return tf.compat.v1.profiler.profile(graph, options=options).total_float_ops / 1e9


def images(dataset, split, count):
  """The first `count` images of a split, uint8 [count, H, W, C]."""
  source = dataset.train() if split == "train" else dataset.test()
  return np.stack(list(source.take(count).as_numpy_iterator()))


def batches(dataset, batch, count=4):
  """`count` training batches dequantised with fixed noise, float32 in [0, 1)."""
  k = images(dataset, "train", batch * count).astype(np.float32)
  u = np.random.default_rng(0).random(k.shape, dtype=np.float32)
  x = (k + u) / dataset.num_bins
  return [tf.constant(x[i * batch:(i + 1) * batch]) for i in range(count)]


def same_bits_per_dim(model, dataset, count):
  """Test bits/dim of the trained `model` (bin centres, first `count` test images) with its
  conditioners evaluated as matrix products (`products=True`) and as Conv2D layers."""
  x = tf.constant((images(dataset, "test", count).astype(np.float32) + 0.5) / dataset.num_bins)

  def bits_per_dim():
    log_prob = tf.function(model.log_prob)(x)
    return lf.flows.log_prob_to_bits_per_dim(log_prob, dataset.image_shape,
                                             dataset.num_bins).numpy()

  with products_everywhere():
    products = bits_per_dim()
  conditioners = use_conv2d(model.bijector)
  convolutions = bits_per_dim()
  for net in conditioners:
    del net.call  # GlowConditioner.call again
  return {"images": count, "mean bits/dim (products)": float(np.mean(products)),
          "mean bits/dim (convolutions)": float(np.mean(convolutions)),
          "max |difference| per image": float(np.max(np.abs(products - convolutions)))}


def measure(trainers, xs, rounds, turn_steps, batch):
  """({name: median images/s}, matmul GFLOP/s median), turns alternating in every round."""
  a = tf.random.normal([2048, 2048], seed=7)
  matmul = tf.function(lambda: tf.matmul(a, a))
  matmul().numpy()
  speed = {name: [] for name in trainers}
  reference = []
  for _ in range(rounds):
    for name, trainer in trainers.items():
      start = time.perf_counter()
      for i in range(turn_steps):
        loss, _ = trainer.step(xs[i % len(xs)])
      float(loss)
      speed[name].append(turn_steps * batch / (time.perf_counter() - start))
    start = time.perf_counter()
    for _ in range(5):
      out = matmul()
    out.numpy()
    reference.append(5 * 2 * 2048 ** 3 / 1e9 / (time.perf_counter() - start))
  return ({name: statistics.median(v) for name, v in speed.items()},
          statistics.median(reference))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--smoke", action="store_true",
                      help="a tiny model and one round: the script runs end to end (the test)")
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--turn_steps", type=int, default=10)
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if args.smoke:
    dataset = lf.data.load_dataset("digits")
    levels, steps, width, batch, rounds, turn, test_images = 2, 1, 8, 8, 1, 2, 16
  else:
    dataset = lf.data.load_dataset("fashion_mnist")
    levels, steps, width, batch = 2, 8, 128, 64
    rounds, turn, test_images = args.rounds, args.turn_steps, 1000
  image_shape = dataset.image_shape
  xs = batches(dataset, batch)
  trainers, first_step = {}, {}
  for evaluation in EVALUATIONS:
    for jit in (False, True):
      name = f"{evaluation}{' + XLA' if jit else ''}"
      trainer = build_trainer(evaluation, jit, image_shape, levels, steps, width, 2000)
      trainer.start(xs[0])
      start = time.perf_counter()
      float(trainer.step(xs[0])[0])
      first_step[name] = time.perf_counter() - start
      trainers[name] = trainer
  gflop = step_gflop(image_shape, levels, steps, width, batch)
  speed, reference = measure(trainers, xs, rounds, turn, batch)
  same = same_bits_per_dim(trainers["GlowConditioner + XLA"].model, dataset, test_images)
  base = speed[EVALUATIONS[0]]
  rows = [{"conditioner": name, "images/s": v, "x Conv2D layers": v / base,
           "first step s": first_step[name], "GFLOP/s": v / batch * gflop,
           "% of matmul": 100 * v / batch * gflop / reference} for name, v in speed.items()]
  rows.append({"conditioner": "2048 x 2048 float32 matmul", "GFLOP/s": reference,
               "% of matmul": 100.0})
  name = "conditioner_speed" + ("_smoke" if args.smoke else "")
  print(results.write(
      name, results.command_line(), rows,
      ["conditioner", "images/s", "x Conv2D layers", "first step s", "GFLOP/s",
       "% of matmul"],
      notes=(f"Training step of {levels} levels x {steps} steps, width {width}, batch {batch}, "
             f"images {image_shape}: {gflop:.2f} GFLOP per step (forward + backward, "
             f"TensorFlow's profiler). Median of {rounds} rounds of {turn}-step turns, the "
             "four trainers and the matmul alternating in one process. The same weights "
             f"(the GlowConditioner + XLA trainer's after its steps) give test bits/dim "
             f"{same['mean bits/dim (products)']:.6f} as products and "
             f"{same['mean bits/dim (convolutions)']:.6f} as convolutions on the first "
             f"{test_images} {dataset.name} test images (bin centres); largest difference "
             f"for one image {same['max |difference| per image']:.1e}."),
      results_dir=args.results_dir, details={"gflop_per_step": gflop, "same_model": same}))


if __name__ == "__main__":
  main()
