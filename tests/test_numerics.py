"""Numerical accuracy of the 1x1 convolution in float32 against float64 (issue 7)."""

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import bijectors as lcb


def perturbed(parametrization, channels, scale, seed=0):
  conv = lcb.InvertibleConv1x1(channels, parametrization=parametrization, seed=seed)
  rng = np.random.default_rng(seed)
  for v in conv.trainable_variables:
    v.assign(v + scale * rng.standard_normal(tuple(v.shape)).astype(np.float32))
  return conv


def float64_matrix(conv):
  """W rebuilt in float64 from the float32 parameters (the exact matrix they define)."""
  if conv.parametrization == "matrix":
    return conv.weight.numpy().astype(np.float64)
  f64 = lambda v: v.numpy().astype(np.float64)
  lower = np.tril(f64(conv.lower), -1) + np.eye(conv.lower.shape[0])
  upper = np.triu(f64(conv.upper), 1) + np.diag(f64(conv.sign_s) * np.exp(f64(conv.log_s)))
  return f64(conv.permutation) @ lower @ upper


@pytest.mark.parametrize("parametrization", ["lu", "matrix"])
@pytest.mark.parametrize("channels", [4, 48, 192])
def test_log_det_and_inverse_match_float64(parametrization, channels):
  # Perturbations of the size training produces: entries ~0.3 / sqrt(C) around a rotation.
  conv = perturbed(parametrization, channels, 0.3 / np.sqrt(channels))
  w64 = float64_matrix(conv)
  logdet64 = np.linalg.slogdet(w64)[1]
  np.testing.assert_allclose(conv.log_abs_det().numpy(), logdet64, rtol=1e-5, atol=1e-5)
  inv64 = np.linalg.inv(w64)
  err = np.abs(conv.inverse_matrix().numpy() - inv64).max() / np.abs(inv64).max()
  assert err < 1e-5, err
  y = tf.random.stateless_normal([2, 3, 3, channels], seed=[1, 2])
  # float32 round trip: two length-C dot products, error ~ C * eps32 * |y|.
  atol = channels * 1e-7 * float(tf.reduce_max(tf.abs(y)))
  np.testing.assert_allclose(conv.forward(conv.inverse(y)).numpy(), y.numpy(), atol=atol)


def test_matrix_log_det_stays_accurate_when_ill_conditioned():
  """A badly conditioned plain matrix: QR in float64 keeps the log-det accurate.

  (The LU parametrisation needs no such test: log|det W| = sum(log_s) exactly.)
  """
  conv = perturbed("matrix", 192, 0.3)
  w64 = float64_matrix(conv)
  assert np.linalg.cond(w64) > 1e4
  np.testing.assert_allclose(conv.log_abs_det().numpy(), np.linalg.slogdet(w64)[1],
                             rtol=1e-5, atol=1e-4)
