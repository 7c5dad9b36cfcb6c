"""The likelihood-contribution split on a hand-built TFP chain (no `build_flow`).

A two-level flow from lcflow_tf.bijectors: squeeze, Glow steps, a `FactorOut` junction whose
`ChannelPermutation` decides which channels stay, the next level, unsqueeze. We
  1. train it with the static split while accumulating LC statistics from the training pass
     itself (`inverse_with_log_det_map` with a `lc.SplitRecorder`),
  2. fix the permutation from the mean LC (`lc.split_permutation`), and
  3. keep training with the data-dependent split.

  python examples/lc_on_chain.py --pilot_steps 150 --steps 150
"""

import argparse
import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_digits

from lcflow_tf import bijectors as lcb
from lcflow_tf import lc
from lcflow_tf import networks

tfb, tfd = tfp.bijectors, tfp.distributions


def steps(shape, hidden, count, prefix):
  n_in, n_out = lcb.conditioner_channels(shape[-1], "channel", "affine")
  parts = []
  for i in range(count):
    parts += [lcb.ActNorm(shape[-1], name=f"{prefix}_actnorm{i}"),
              lcb.InvertibleConv1x1(shape[-1], seed=i, name=f"{prefix}_conv{i}"),
              lcb.AffineCoupling(networks.glow_network(n_in, n_out, hidden), shape,
                                 name=f"{prefix}_coupling{i}")]
  return parts


def build_chain(hidden=32, count=2):
  level0 = (4, 4, 4)          # 8x8x1 squeezed
  level1 = (2, 2, 8)          # kept half (4x4x2) squeezed
  inner = tfb.Chain([lcb.Squeeze()] + steps(level1, hidden, count, "l1")
                    + [tfb.Invert(lcb.Squeeze())])
  permutation = lcb.ChannelPermutation(level0)
  junction = lcb.FactorOut(inner, level0, prior="conditional",
                           prior_network=networks.prior_network(2, 4), permutation=permutation)
  chain = tfb.Chain([lcb.Squeeze()] + steps(level0, hidden, count, "l0")
                    + [junction, tfb.Invert(lcb.Squeeze())])
  return chain, junction


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--pilot_steps", type=int, default=150)
  parser.add_argument("--steps", type=int, default=150)
  args = parser.parse_args()

  k = load_digits().images.reshape(-1, 8, 8, 1).astype(np.float32)
  rng = np.random.default_rng(0)
  chain, junction = build_chain()
  variables = lcb.collect_trainable_variables(chain)
  stats = lc.LCStatistics([junction.event_shape])
  optimizer = keras.optimizers.Adam(1e-3)

  def log_prob_and_sums(x):
    recorder = lc.SplitRecorder()
    z, a = lcb.inverse_with_log_det_map(chain, x, recorder=recorder)
    normal = -0.5 * tf.square(z) - 0.5 * math.log(2 * math.pi)
    return tf.reduce_sum(normal + a, [1, 2, 3]), recorder.batch_sums()

  @tf.function
  def train_step(x, collect):
    with tf.GradientTape() as tape:
      log_prob, sums = log_prob_and_sums(x)
      loss = -tf.reduce_mean(log_prob)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    if collect:
      stats.update(sums)
    return loss

  def dequantized(idx):
    return (k[idx] + rng.random(k[idx].shape, dtype=np.float32)) / 17.0

  def test_bpd():
    lp, _ = log_prob_and_sums(dequantized(np.arange(1500, 1797)))
    return float(tf.reduce_mean(-(lp - 64 * math.log(17.0)) / (64 * math.log(2.0))))

  log_prob_and_sums(dequantized(np.arange(256)))  # ActNorm data-dependent initialisation
  for _ in range(args.pilot_steps):
    train_step(dequantized(rng.integers(0, 1500, 64)), True)
  pilot = test_bpd()
  order = lc.split_permutation(stats.mean_lc[0].numpy(), "lc")
  junction.permutation.set_indices(order)
  fixed = test_bpd()  # the same weights with the new split: a different model
  for _ in range(args.steps):
    train_step(dequantized(rng.integers(0, 1500, 64)), False)
  print(f"statistics over {int(stats.count.numpy())} images; kept channels at (0, 0): "
        f"{sorted(order[0, 0, :2].tolist())}; test bits/dim: pilot {pilot:.3f}, "
        f"split fixed {fixed:.3f}, after {args.steps} more steps {test_bpd():.3f}")


if __name__ == "__main__":
  main()
