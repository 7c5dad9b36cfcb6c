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

Glow's conditioner (`glow_network`, a `GlowConditioner`) holds Keras `Conv2D` layers but
evaluates them as matrix products where that is faster (`glow_conditioner`). The 1x1
convolution is always one product. Under XLA (`jit=True` of the training step) the 3x3 ones
are products too: the first on the 3x3 neighbourhoods of every pixel, the last as a product to
one output per kernel tap, summed over the taps at their offsets; XLA fuses the
neighbourhoods and the sums, and the training step runs about 1.25x faster than without XLA
and 1.8x faster than XLA with its own convolutions (`benchmarks/speed/conditioner_speed.py`).
Without XLA the 3x3 convolutions stay TensorFlow's convolution kernels (oneDNN), which are
faster there, and SavedModels (traced without XLA) hold ops that any TensorFlow runtime serves.
The learned split prior's one 3x3 convolution (`prior_network`, a `SplitPrior`) is the same
product over the neighbourhoods under XLA, and TensorFlow's kernel otherwise. Every way gives
the convolutions' result to float32 rounding.
"""

import math

import keras
import tensorflow as tf
# TensorFlow's own test for "this op is traced for XLA" has no public name.
from tensorflow.python.framework import ops as tf_ops  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.ops import control_flow_util  # pylint: disable=g-direct-tensorflow-import

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


def _neighbourhoods(x):
  """[N, H, W, C] -> [N, H, W, 9C]: every pixel's zero-padded 3x3 neighbourhood, ordered
  (kernel row, kernel column, channel) as a [3, 3, C, F] kernel flattens to [9C, F]."""
  height, width = tf.shape(x)[1], tf.shape(x)[2]
  padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
  return tf.concat([padded[:, i:i + height, j:j + width, :]
                    for i in range(3) for j in range(3)], axis=-1)


def _sum_over_taps(y, channels):
  """[N, H, W, 9C] products per kernel tap (row, column, channel) -> [N, H, W, C]: the 3x3
  'same' convolution, each tap's product read at the tap's offset from the output pixel."""
  height, width = tf.shape(y)[1], tf.shape(y)[2]
  padded = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]])
  taps = [padded[:, i:i + height, j:j + width, (3 * i + j) * channels:(3 * i + j + 1) * channels]
          for i in range(3) for j in range(3)]
  return tf.add_n(taps)


def _neighbourhood_product(x, kernel):
  """[N, H, W, C_in] x [3, 3, C_in, F] -> [N * H * W, F]: the 3x3 'same' convolution as one
  product of every pixel's neighbourhood with the flattened kernel."""
  c_in, filters = kernel.shape[2], kernel.shape[3]
  return tf.reshape(_neighbourhoods(x), [-1, 9 * c_in]) @ tf.reshape(kernel, [9 * c_in, filters])


def compiling_with_xla():
  """Whether the ops being created now are traced for XLA (inside `jit_compile=True`)."""
  return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def glow_conditioner(x, first, middle, last, products=None):
  """conv3x3 -> ReLU -> conv1x1 -> ReLU -> conv3x3 ('same' padding), 1x1 as a matrix product.

  Args:
    x: [N, H, W, C_in] images.
    first: (kernel, bias) of the first convolution, shapes [3, 3, C_in, F] and [F].
    middle: (kernel, bias) of the 1x1 convolution, shapes [1, 1, F, F] and [F].
    last: (kernel, bias) of the last convolution, shapes [3, 3, F, C_out] and [C_out].
    products: evaluate the 3x3 convolutions as matrix products too; None: when
      `compiling_with_xla()`.

  Returns:
    [N, H, W, C_out]: what the three `Conv2D` layers compute, to float32 rounding.
  """
  (k1, b1), (k2, b2), (k3, b3) = first, middle, last
  hidden, c_out = k1.shape[3], k3.shape[3]
  if products is None:
    products = compiling_with_xla()
  with tf.name_scope("glow_conditioner"):
    shape = tf.shape(x)
    if products:
      h = tf.nn.relu(tf.nn.bias_add(_neighbourhood_product(x, k1), b1))
    else:  # convolution, bias and ReLU, which TensorFlow fuses into one kernel
      h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "SAME"), b1))
      h = tf.reshape(h, [-1, hidden])
    h = tf.nn.relu(tf.nn.bias_add(h @ tf.reshape(k2, [hidden, hidden]), b2))
    if not products:
      h = tf.reshape(h, tf.concat([shape[:3], [hidden]], axis=0))
      return tf.nn.bias_add(tf.nn.conv2d(h, k3, 1, "SAME"), b3)
    taps = h @ tf.reshape(tf.transpose(k3, [2, 0, 1, 3]), [hidden, 9 * c_out])
    taps = tf.reshape(taps, tf.concat([shape[:3], [9 * c_out]], axis=0))
    return tf.nn.bias_add(_sum_over_taps(taps, c_out), b3)


@keras.saving.register_keras_serializable(package="lcflow_tf")
class GlowConditioner(keras.Sequential):
  """Glow's conditioner: a `keras.Sequential` of conv3x3, conv1x1 and conv3x3 `Conv2D` layers
  (ReLU after the first two) whose call is `glow_conditioner` on their weights.

  The layers, weights, checkpoints and saved configurations are a `Sequential`'s; only the
  evaluation differs (see the module docstring).
  """

  def call(self, inputs, training=None, mask=None):
    del training, mask  # no layer depends on them
    if len(self.layers) != 3:
      raise ValueError(f"GlowConditioner: expected 3 Conv2D layers, got {len(self.layers)}.")
    dtype = inputs.dtype
    weights = [(tf.cast(layer.kernel, dtype), tf.cast(layer.bias, dtype))
               for layer in self.layers]
    return glow_conditioner(inputs, *weights)


def glow_network(in_channels, out_channels, hidden_channels, dtype="float32", name=None,
                 init=DEFAULT_INIT):
  """Glow's conditioner: conv3x3 -> ReLU -> conv1x1 -> ReLU -> zero-initialised conv3x3.

  Returns:
    A `GlowConditioner` (a `keras.Sequential` of the three `Conv2D` layers).
  """
  _check(in_channels, out_channels, hidden_channels, init)
  return GlowConditioner([
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


def split_prior_conv(x, kernel, bias, products=None):
  """The learned split prior's 3x3 convolution ('same' padding) with its bias.

  Args:
    x: [N, H, W, C_in] images (the kept half at a split).
    kernel: [3, 3, C_in, C_out] kernel.
    bias: [C_out] bias.
    products: evaluate it as one matrix product over the pixels' 3x3 neighbourhoods; None:
      when `compiling_with_xla()` (XLA's own convolution is slower on these few channels).

  Returns:
    [N, H, W, C_out]: what the `Conv2D` layer computes, to float32 rounding.
  """
  if products is None:
    products = compiling_with_xla()
  with tf.name_scope("split_prior"):
    if not products:
      return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias)
    shape = tf.shape(x)
    out = tf.reshape(_neighbourhood_product(x, kernel),
                     tf.concat([shape[:3], [kernel.shape[3]]], axis=0))
    return tf.nn.bias_add(out, bias)


@keras.saving.register_keras_serializable(package="lcflow_tf")
class SplitPrior(keras.Sequential):
  """Glow's learned split prior: a `keras.Sequential` of one conv3x3 `Conv2D` layer whose call
  is `split_prior_conv` on its weights (a `Sequential`'s weights, checkpoints and saved
  configuration; only the evaluation under XLA differs)."""

  def call(self, inputs, training=None, mask=None):
    del training, mask  # the layer depends on neither
    if len(self.layers) != 1:
      raise ValueError(f"SplitPrior: expected 1 Conv2D layer, got {len(self.layers)}.")
    layer = self.layers[0]
    return split_prior_conv(inputs, tf.cast(layer.kernel, inputs.dtype),
                            tf.cast(layer.bias, inputs.dtype))


def prior_network(in_channels, out_channels, dtype="float32", name=None):
  """Glow's learned split prior: one zero-initialised conv3x3 giving (mean, log_sigma).

  Returns:
    A `SplitPrior` (a `keras.Sequential` of the `Conv2D` layer).
  """
  _check(in_channels, out_channels, 1)
  return SplitPrior([
      keras.Input((None, None, in_channels), dtype=dtype),
      _conv(out_channels, 3, dtype, in_channels, DEFAULT_INIT, zero=True),
  ], name=name)


def _check(in_channels, out_channels, hidden_channels, init=DEFAULT_INIT):
  for arg, value in (("in_channels", in_channels), ("out_channels", out_channels),
                     ("hidden_channels", hidden_channels)):
    checks.check_int(arg, value, 1, caller="networks")
  checks.check_choice("init", init, INITS, caller="networks")
