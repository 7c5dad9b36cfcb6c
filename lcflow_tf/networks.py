"""Keras 3 conditioner networks for couplings and the learned split prior.

Every network's last layer is zero-initialised, so a fresh coupling's shift and raw scale
are 0 and a fresh flow starts close to the identity (Glow, arXiv 1807.03039, sec. 3.3).

The other convolutions are initialised by `init`:
  * `"uniform"` (default): weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in =
    kernel height x width x input channels (PyTorch's default for `Conv2d`, which normflows'
    Glow uses); weights have standard deviation 1/sqrt(3 fan_in);
  * `"he_normal"`: He et al.'s truncated normal with standard deviation sqrt(2 / fan_in) and
    zero biases (Keras's and TFP's `GlowDefaultNetwork`'s choice), ~2.4x larger weights.
`benchmarks/numerics/noise_floor.py` compares the two.
"""

import math

import keras

from lcflow_tf import checks

NETWORKS = ("glow", "resnet")
INITS = ("uniform", "he_normal")
DEFAULT_INIT = "uniform"


def _conv(filters, kernel, dtype, in_channels, init, zero=False, activation=None, name=None):
  if zero:
    weights, biases = "zeros", "zeros"
  elif init == "uniform":
    bound = 1.0 / math.sqrt(kernel * kernel * in_channels)
    weights = keras.initializers.RandomUniform(-bound, bound)
    biases = keras.initializers.RandomUniform(-bound, bound)
  else:
    weights, biases = keras.initializers.HeNormal(), "zeros"
  return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                             kernel_initializer=weights, bias_initializer=biases, dtype=dtype,
                             name=name)


def glow_network(in_channels, out_channels, hidden_channels, dtype="float32", name=None,
                 init=DEFAULT_INIT):
  """Glow's conditioner: conv3x3 -> ReLU -> conv1x1 -> ReLU -> zero-initialised conv3x3."""
  _check(in_channels, out_channels, hidden_channels, init)
  return keras.Sequential([
      keras.Input((None, None, in_channels), dtype=dtype),
      _conv(hidden_channels, 3, dtype, in_channels, init, activation="relu"),
      _conv(hidden_channels, 1, dtype, hidden_channels, init, activation="relu"),
      _conv(out_channels, 3, dtype, hidden_channels, init, zero=True),
  ], name=name)


def resnet_network(in_channels, out_channels, hidden_channels, num_blocks=2, dtype="float32",
                   name=None, init=DEFAULT_INIT):
  """RealNVP-style residual conditioner: conv3x3, `num_blocks` residual blocks, zero conv3x3."""
  _check(in_channels, out_channels, hidden_channels, init)
  checks.check_int("num_blocks", num_blocks, 0, caller="resnet_network")
  inputs = keras.Input((None, None, in_channels), dtype=dtype)
  h = _conv(hidden_channels, 3, dtype, in_channels, init)(inputs)
  for _ in range(num_blocks):
    r = keras.layers.Activation("relu", dtype=dtype)(h)
    r = _conv(hidden_channels, 3, dtype, hidden_channels, init, activation="relu")(r)
    r = _conv(hidden_channels, 3, dtype, hidden_channels, init)(r)
    h = keras.layers.Add(dtype=dtype)([h, r])
  h = keras.layers.Activation("relu", dtype=dtype)(h)
  outputs = _conv(out_channels, 3, dtype, hidden_channels, init, zero=True)(h)
  return keras.Model(inputs, outputs, name=name)


def prior_network(in_channels, out_channels, dtype="float32", name=None):
  """Glow's learned split prior: one zero-initialised conv3x3 giving (mean, log_sigma)."""
  _check(in_channels, out_channels, 1)
  return keras.Sequential([
      keras.Input((None, None, in_channels), dtype=dtype),
      _conv(out_channels, 3, dtype, in_channels, DEFAULT_INIT, zero=True),
  ], name=name)


def _check(in_channels, out_channels, hidden_channels, init=DEFAULT_INIT):
  for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                     ("hidden_channels", hidden_channels)):
    checks.check_int(arg, value, 1, caller="networks")
  checks.check_choice("init", init, INITS, caller="networks")
