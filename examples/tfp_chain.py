"""A Glow-style flow assembled by hand from lcflow_tf.bijectors and plain TFP pieces.

No `build_flow`: a `tfb.Chain` of our Squeeze / ActNorm / InvertibleConv1x1 / AffineCoupling
over a `tfd.Sample(tfd.Normal(0, 1))` base, as a `tfd.TransformedDistribution`, trained with a
plain `tf.GradientTape` loop on scikit-learn digits (8x8, 17 levels).

  python examples/tfp_chain.py --steps 300
"""

import argparse
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_digits

from lcflow_tf import bijectors as lcb
from lcflow_tf import networks

tfb, tfd = tfp.bijectors, tfp.distributions


def glow_step(shape, hidden, index):
  """ActNorm -> 1x1 convolution -> affine coupling, listed in image -> latent order."""
  n_in, n_out = lcb.conditioner_channels(shape[-1], "channel", "affine")
  return [
      lcb.ActNorm(shape[-1], name=f"actnorm{index}"),
      lcb.InvertibleConv1x1(shape[-1], seed=index, name=f"conv{index}"),
      lcb.AffineCoupling(networks.glow_network(n_in, n_out, hidden), shape, mask="channel",
                         name=f"coupling{index}"),
  ]


def build_chain(steps=4, hidden=32):
  squeezed = (4, 4, 4)
  parts = [lcb.Squeeze()]
  for i in range(steps):
    parts += glow_step(squeezed, hidden, i)
  parts.append(tfb.Invert(lcb.Squeeze()))
  # tfb.Chain([b1, ..., bn]).inverse applies b1.inverse first, so the list reads image -> latent.
  return tfb.Chain(parts)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=300)
  args = parser.parse_args()

  k = load_digits().images.reshape(-1, 8, 8, 1).astype(np.float32)
  rng = np.random.default_rng(0)
  bijector = build_chain()
  base = tfd.Sample(tfd.Normal(0.0, 1.0), sample_shape=[8, 8, 1])
  flow = tfd.TransformedDistribution(base, bijector)
  # Keras 3 layer variables are invisible to tf.Module: collect them deliberately.
  variables = lcb.collect_trainable_variables(bijector)
  optimizer = keras.optimizers.Adam(1e-3)

  def bits_per_dim(log_prob):
    return -(log_prob - 64 * math.log(17.0)) / (64 * math.log(2.0))

  @tf.function
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  def dequantized(idx):
    return (k[idx] + rng.random(k[idx].shape, dtype=np.float32)) / 17.0

  test = dequantized(np.arange(1500, 1797))
  # The first batch initialises every ActNorm (data-dependent, inside the traced step).
  start = float(tf.reduce_mean(bits_per_dim(flow.log_prob(test))))
  for step in range(args.steps):
    train_step(dequantized(rng.integers(0, 1500, 64)))
  end = float(tf.reduce_mean(bits_per_dim(flow.log_prob(test))))
  samples = flow.sample(4, seed=1)
  print(f"test bits/dim: {start:.3f} -> {end:.3f} after {args.steps} steps; "
        f"{len(variables)} variables; samples {samples.shape}")


if __name__ == "__main__":
  main()
