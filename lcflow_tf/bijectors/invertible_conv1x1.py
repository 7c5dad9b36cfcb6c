"""Glow's invertible 1x1 convolution, LU-decomposed or as a plain matrix."""

import numpy as np
import tensorflow as tf

from lcflow_tf.bijectors import base

PARAMETRIZATIONS = ("lu", "matrix")


class InvertibleConv1x1(base.ImageBijector):
  """Channel mixing `x[h, w] = W y[h, w]` at every location (Glow, arXiv 1807.03039, sec. 3.2).

  `inverse` (image -> latent) applies W; `forward` applies W^-1. The inverse log-det of an
  image is `H * W_img * log|det W|`.

  Parametrisations:
    * `"lu"` (default): `W = P L (U + diag(sign * exp(log_s)))` with P a fixed permutation, L
      unit lower-triangular, U strictly upper-triangular. `log|det W| = sum(log_s)` exactly;
      W^-1 comes from two triangular solves.
    * `"matrix"`: W itself is trainable; `log|det W|` and W^-1 are computed in float64
      (QR decomposition, `inv`) and cast back, which keeps them accurate for C up to a few
      hundred.

  Per-element log-det rule (for the likelihood contributions): a 1x1 convolution has only a
  per-location log-det; it is spread evenly over the C channels of the location, i.e. every
  element gets `log|det W| / C`, which keeps each location's total exact.

  W starts as a random rotation (seeded), so a fresh layer is volume preserving.

  Args:
    num_channels: C.
    parametrization: `"lu"` or `"matrix"`.
    seed: integer seed of the initial rotation.
    dtype: dtype of variables and images.
    validate_args: unused beyond TFP's checks.
    name: name of the bijector.

  Raises:
    ValueError: for a non-positive `num_channels` or an unknown `parametrization`.
  """

  def __init__(self, num_channels, parametrization="lu", seed=0, dtype=tf.float32,
               validate_args=False, name="invertible_conv1x1"):
    parameters = dict(locals())
    if not isinstance(num_channels, int) or num_channels <= 0:
      raise ValueError(
          f"InvertibleConv1x1: num_channels must be a positive int, got {num_channels!r}.")
    if parametrization not in PARAMETRIZATIONS:
      raise ValueError(f"InvertibleConv1x1: parametrization must be one of {PARAMETRIZATIONS}, "
                       f"got {parametrization!r}.")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype)
    self._num_channels = num_channels
    self._parametrization = parametrization
    rng = np.random.default_rng(seed)
    w0 = np.linalg.qr(rng.standard_normal((num_channels, num_channels)))[0]
    with tf.name_scope(self.name):
      if parametrization == "matrix":
        self.weight = tf.Variable(tf.constant(w0, dtype), name="weight")
        return
      lu, perm = tf.linalg.lu(tf.constant(w0, tf.float64))
      lu = lu.numpy()
      p = np.eye(num_channels)[perm.numpy()]
      s = np.diag(lu)
      self.permutation = tf.Variable(tf.constant(p, dtype), trainable=False, name="permutation")
      self.sign_s = tf.Variable(tf.constant(np.sign(s), dtype), trainable=False, name="sign_s")
      self.log_s = tf.Variable(tf.constant(np.log(np.abs(s)), dtype), name="log_s")
      self.lower = tf.Variable(tf.constant(np.tril(lu, -1), dtype), name="lower")
      self.upper = tf.Variable(tf.constant(np.triu(lu, 1), dtype), name="upper")

  @property
  def parametrization(self):
    return self._parametrization

  def _lu_factors(self):
    c = self._num_channels
    lower = tf.linalg.band_part(self.lower, -1, 0) - tf.linalg.band_part(self.lower, 0, 0)
    lower = lower + tf.eye(c, dtype=self.dtype)
    upper = tf.linalg.band_part(self.upper, 0, -1) - tf.linalg.band_part(self.upper, 0, 0)
    upper = upper + tf.linalg.diag(self.sign_s * tf.exp(self.log_s))
    return lower, upper

  def matrix(self):
    """W, the matrix the inverse (image -> latent) applies to each channel vector."""
    if self._parametrization == "matrix":
      return tf.convert_to_tensor(self.weight)
    lower, upper = self._lu_factors()
    return tf.matmul(self.permutation, tf.matmul(lower, upper))

  def inverse_matrix(self):
    """W^-1, applied by `forward`."""
    if self._parametrization == "matrix":
      return tf.cast(tf.linalg.inv(tf.cast(self.weight, tf.float64)), self.dtype)
    lower, upper = self._lu_factors()
    c = self._num_channels
    # W^-1 = U^-1 L^-1 P^T, by triangular solves.
    l_inv = tf.linalg.triangular_solve(lower, tf.eye(c, dtype=self.dtype), lower=True)
    return tf.linalg.triangular_solve(upper, tf.matmul(l_inv, self.permutation, transpose_b=True),
                                      lower=False)

  def log_abs_det(self):
    """log|det W|."""
    if self._parametrization == "matrix":
      # |det W| = |det R| of W = QR; unlike slogdet, QR compiles under XLA (jit_compile).
      r = tf.linalg.qr(tf.cast(self.weight, tf.float64))[1]
      return tf.cast(tf.reduce_sum(tf.math.log(tf.abs(tf.linalg.diag_part(r)))), self.dtype)
    return tf.reduce_sum(self.log_s)

  def _check(self, x):
    return base.check_image(x, self.name, channels=self._num_channels)

  def _mix(self, t, matrix):
    """`matrix @ t[..., :]` at every location, as one [N*H*W, C] x [C, C] matmul.

    A plain matmul is several times faster than the equivalent einsum on CPU, mostly in the
    backward pass (profile in docs/results/profile_train_step*.md).
    """
    t = self._check(t)
    with tf.name_scope("apply"):  # (profiles tell applying W from assembling it)
      flat = tf.reshape(t, [-1, self._num_channels])
      return tf.reshape(tf.matmul(flat, matrix, transpose_b=True), tf.shape(t))

  def _inverse_and_log_det_map(self, y):
    x = self._mix(y, self.matrix())
    per_element = self.log_abs_det() / self._num_channels
    return x, tf.broadcast_to(per_element, tf.shape(x))

  def _inverse(self, y):  # without the map
    return self._mix(y, self.matrix())

  def _forward(self, x):  # without the log-det
    return self._mix(x, self.inverse_matrix())

  def _forward_and_log_det(self, x):
    return self._forward(x), self._forward_log_det_jacobian(x)

  def _inverse_log_det_jacobian(self, y):  # needs no transform
    hw = tf.cast(tf.reduce_prod(tf.shape(y)[-3:-1]), y.dtype)
    return hw * self.log_abs_det()

  def _forward_log_det_jacobian(self, x):  # needs no transform
    hw = tf.cast(tf.reduce_prod(tf.shape(x)[-3:-1]), x.dtype)
    return -hw * self.log_abs_det()
