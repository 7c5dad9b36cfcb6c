"""Keras 3 conditioner networks for couplings and the learned split prior.

Every network's last layer is zero-initialised, so a fresh coupling's shift and raw scale
are 0 and a fresh flow starts close to the identity (Glow, arXiv 1807.03039, sec. 3.3).
"""

import keras

NETWORKS = ("glow", "resnet")


def _conv(filters, kernel, dtype, zero=False, activation=None, name=None):
  init = "zeros" if zero else keras.initializers.HeNormal()
  return keras.layers.Conv2D(filters, kernel, padding="same", activation=activation,
                             kernel_initializer=init, bias_initializer="zeros", dtype=dtype,
                             name=name)


def glow_network(in_channels, out_channels, hidden_channels, dtype="float32", name=None):
  """Glow's conditioner: conv3x3 -> ReLU -> conv1x1 -> ReLU -> zero-initialised conv3x3."""
  _check(in_channels, out_channels, hidden_channels)
  return keras.Sequential([
      keras.Input((None, None, in_channels), dtype=dtype),
      _conv(hidden_channels, 3, dtype, activation="relu"),
      _conv(hidden_channels, 1, dtype, activation="relu"),
      _conv(out_channels, 3, dtype, zero=True),
  ], name=name)


def resnet_network(in_channels, out_channels, hidden_channels, num_blocks=2, dtype="float32",
                   name=None):
  """RealNVP-style residual conditioner: conv3x3, `num_blocks` residual blocks, zero conv3x3."""
  _check(in_channels, out_channels, hidden_channels)
  if not isinstance(num_blocks, int) or num_blocks < 0:
    raise ValueError(f"resnet_network: num_blocks must be an int >= 0, got {num_blocks!r}.")
  inputs = keras.Input((None, None, in_channels), dtype=dtype)
  h = _conv(hidden_channels, 3, dtype)(inputs)
  for _ in range(num_blocks):
    r = keras.layers.Activation("relu", dtype=dtype)(h)
    r = _conv(hidden_channels, 3, dtype, activation="relu")(r)
    r = _conv(hidden_channels, 3, dtype)(r)
    h = keras.layers.Add(dtype=dtype)([h, r])
  h = keras.layers.Activation("relu", dtype=dtype)(h)
  outputs = _conv(out_channels, 3, dtype, zero=True)(h)
  return keras.Model(inputs, outputs, name=name)


def prior_network(in_channels, out_channels, dtype="float32", name=None):
  """Glow's learned split prior: one zero-initialised conv3x3 giving (mean, log_sigma)."""
  _check(in_channels, out_channels, 1)
  return keras.Sequential([
      keras.Input((None, None, in_channels), dtype=dtype),
      _conv(out_channels, 3, dtype, zero=True),
  ], name=name)


def _check(in_channels, out_channels, hidden_channels):
  for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                     ("hidden_channels", hidden_channels)):
    if not isinstance(value, int) or value <= 0:
      raise ValueError(f"networks: {arg} must be a positive int, got {value!r}.")
