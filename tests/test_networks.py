"""Conditioner networks: zero-initialised last layers, the two initialisations, and Glow's
conditioner evaluated as matrix products."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import networks


def _convs(net):
  return [layer for layer in net.layers if hasattr(layer, "kernel")]


@pytest.mark.parametrize("make", [
    lambda init: networks.glow_network(6, 12, 64, init=init),
    lambda init: networks.resnet_network(6, 12, 64, num_blocks=1, init=init)])
def test_initialisations(make):
  for init in networks.INITS:
    convs = _convs(make(init))
    *hidden, last = convs
    assert not np.any(last.kernel.numpy()) and not np.any(last.bias.numpy())
    for conv in hidden:
      kernel, bias = conv.kernel.numpy(), conv.bias.numpy()
      fan_in = int(np.prod(kernel.shape[:-1]))
      if init == "uniform":  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), biases too
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound
        assert kernel.std() == pytest.approx(bound / math.sqrt(3.0), rel=0.1)
        assert np.abs(bias).max() > 0.3 * bound
      else:  # He normal, zero biases
        assert kernel.std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.15)
        assert not np.any(bias)


def test_unknown_initialisation():
  with pytest.raises(ValueError, match=r"^networks: init must be one of \['uniform', "
                                       r"'he_normal'\], got 'xavier'\.$"):
    networks.glow_network(2, 4, 8, init="xavier")


def _randomised_glow_network(in_channels, out_channels, hidden, dtype="float32"):
  keras.utils.set_random_seed(3)
  net = networks.glow_network(in_channels, out_channels, hidden, dtype=dtype)
  for v in net.trainable_variables:  # the zero last layer would hide the third product
    v.assign(0.3 * tf.random.normal(v.shape, seed=4, dtype=dtype))
  return net


def _layer_by_layer(net, x):
  for layer in net.layers:
    x = layer(x)
  return x


@pytest.mark.parametrize("products", [True, False])
@pytest.mark.parametrize("in_channels,out_channels,height,width", [
    (2, 4, 14, 14), (4, 8, 7, 7), (3, 6, 5, 9), (1, 2, 1, 1)])
def test_glow_conditioner_is_its_convolutions(in_channels, out_channels, height, width,
                                              products):
  """Both evaluations give the Conv2D layers' outputs and gradients, to float32 rounding."""
  net = _randomised_glow_network(in_channels, out_channels, 16)
  assert isinstance(net, networks.GlowConditioner) and isinstance(net, keras.Sequential)
  x = tf.random.normal([3, height, width, in_channels], seed=5)
  weights = net.trainable_variables
  upstream = tf.random.normal([3, height, width, out_channels], seed=6)
  pairs = [(layer.kernel, layer.bias) for layer in net.layers]
  results = []
  for fn in (lambda t: networks.glow_conditioner(t, *pairs, products=products),
             lambda t: _layer_by_layer(net, t)):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
      loss = tf.reduce_sum(y * upstream)
    results.append([y] + tape.gradient(loss, [x] + weights))
  for got, want in zip(*results):
    scale = float(tf.reduce_max(tf.abs(want)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=2e-6 * scale)


def _op_types(fn, x):
  return [op.type for op in tf.function(fn).get_concrete_function(x).graph.get_operations()]


def test_glow_conditioner_chooses_products_under_xla():
  """Products for all three convolutions where XLA compiles; TensorFlow's 3x3 convolution
  kernels otherwise (a SavedModel, traced without XLA, holds plain Conv2D ops)."""
  net = _randomised_glow_network(2, 4, 8)
  x = tf.random.normal([2, 6, 6, 2], seed=5)
  plain = _op_types(net, x)
  assert plain.count("Conv2D") == 2 and plain.count("MatMul") == 1
  seen = []

  def compiled(t):
    seen.append(networks.compiling_with_xla())
    return net(t)

  assert not networks.compiling_with_xla()
  assert _op_types(tf.function(compiled, jit_compile=True), x).count("Conv2D") == 0
  assert seen == [True]
  np.testing.assert_allclose(tf.function(net, jit_compile=True)(x).numpy(), net(x).numpy(),
                             rtol=1e-5, atol=1e-5)


def test_glow_conditioner_float64():
  net = _randomised_glow_network(2, 4, 8, dtype="float64")
  x = tf.random.normal([2, 6, 6, 2], seed=5, dtype=tf.float64)
  for products in (True, False):
    pairs = [(layer.kernel, layer.bias) for layer in net.layers]
    np.testing.assert_allclose(networks.glow_conditioner(x, *pairs, products=products).numpy(),
                               _layer_by_layer(net, x).numpy(), rtol=1e-12, atol=1e-12)


def _plain_sequential(net):
  """A plain `keras.Sequential` of `Conv2D` layers shaped like `net`'s."""
  return keras.Sequential([keras.Input((None, None, 2))] + [
      keras.layers.Conv2D(layer.filters, layer.kernel_size, padding="same",
                          activation=layer.activation) for layer in net.layers])


@pytest.mark.parametrize("make,kind", [
    (lambda: _randomised_glow_network(2, 4, 8), networks.GlowConditioner),
    (lambda: _randomised_prior(2, 4), networks.SplitPrior)])
def test_networks_read_sequential_checkpoints_and_keras_files(make, kind, tmp_path):
  """Their weights are a Sequential's: a checkpoint of the plain Sequential restores into them,
  and a .keras file brings back their own class."""
  net = make()
  plain = _plain_sequential(net)
  for a, b in zip(plain.weights, net.weights):
    a.assign(b + 1.0)
  path = tf.train.Checkpoint(net=plain).write(str(tmp_path / "ckpt"))
  tf.train.Checkpoint(net=net).read(path).assert_consumed()
  x = tf.random.normal([2, 5, 5, 2], seed=6)
  np.testing.assert_allclose(net(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
  net.save(tmp_path / "net.keras")
  loaded = keras.saving.load_model(tmp_path / "net.keras")
  assert type(loaded) is kind
  np.testing.assert_allclose(loaded(x).numpy(), net(x).numpy(), rtol=0, atol=0)


def _randomised_prior(in_channels, out_channels, dtype="float32"):
  keras.utils.set_random_seed(3)
  net = networks.prior_network(in_channels, out_channels, dtype=dtype)
  for v in net.trainable_variables:  # zero-initialised: randomise to see the product
    v.assign(0.3 * tf.random.normal(v.shape, seed=4, dtype=dtype))
  return net


@pytest.mark.parametrize("products", [True, False])
@pytest.mark.parametrize("in_channels,out_channels,height,width", [
    (2, 4, 14, 14), (4, 8, 7, 7), (1, 2, 1, 1)])
def test_split_prior_is_its_convolution(in_channels, out_channels, height, width, products):
  """Both evaluations give the Conv2D layer's output and gradients, to float32 rounding."""
  net = _randomised_prior(in_channels, out_channels)
  assert isinstance(net, networks.SplitPrior) and isinstance(net, keras.Sequential)
  x = tf.random.normal([3, height, width, in_channels], seed=5)
  upstream = tf.random.normal([3, height, width, out_channels], seed=6)
  layer = net.layers[0]
  results = []
  for fn in (lambda t: networks.split_prior_conv(t, layer.kernel, layer.bias,
                                                 products=products),
             layer):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(fn(x) * upstream)
    results.append([fn(x)] + tape.gradient(loss, [x] + net.trainable_variables))
  for got, want in zip(*results):
    scale = float(tf.reduce_max(tf.abs(want)))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=2e-6 * scale)


def test_split_prior_chooses_products_under_xla():
  net = _randomised_prior(2, 4)
  x = tf.random.normal([2, 6, 6, 2], seed=5)
  assert _op_types(net, x).count("Conv2D") == 1
  assert _op_types(tf.function(net, jit_compile=True), x).count("Conv2D") == 0
  np.testing.assert_allclose(tf.function(net, jit_compile=True)(x).numpy(), net(x).numpy(),
                             rtol=1e-5, atol=1e-5)
  x64 = tf.cast(x, tf.float64)
  net64 = _randomised_prior(2, 4, dtype="float64")
  layer = net64.layers[0]
  np.testing.assert_allclose(
      networks.split_prior_conv(x64, layer.kernel, layer.bias, products=True).numpy(),
      layer(x64).numpy(), rtol=1e-12, atol=1e-12)

