"""Conditioner networks: zero-initialised last layers and the two initialisations."""

import math

import numpy as np
import pytest

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
