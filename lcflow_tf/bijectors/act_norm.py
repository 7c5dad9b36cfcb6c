"""ActNorm: per-channel affine normalisation with data-dependent initialisation."""

import tensorflow as tf

from lcflow_tf.bijectors import base


class ActNorm(base.ImageBijector):
  """Per-channel scale and bias (Glow, arXiv 1807.03039, sec. 3.1).

  `inverse` (image -> latent): `x = (y - loc) * exp(log_scale)`; `forward`:
  `y = x * exp(-log_scale) + loc`. Per-element inverse log-det: `log_scale[c]` on every element
  of channel c, so the image total is `H * W * sum(log_scale)`.

  Data-dependent initialisation sets `loc` to the per-channel mean and `log_scale` to minus
  the log of the per-channel standard deviation of a batch, so that batch leaves with zero
  mean and unit variance per channel. It happens on the first batch the bijector inverts
  (eagerly, or inside a `tf.function` outside a distribution strategy's replica context), or
  explicitly with `initialize(y)`. Whether it happened is the non-trainable variable
  `initialized`, saved with checkpoints and SavedModels, so a restored model never
  re-initialises.

  Args:
    num_channels: C, the channel count of the images.
    epsilon: added to the standard deviation at initialisation.
    dtype: dtype of the variables and images.
    validate_args: check that the initialisation batch is not empty.
    name: name of the bijector.

  Raises:
    ValueError: if `num_channels` is not a positive integer, or an input has another channel
      count.
  """

  def __init__(self, num_channels, epsilon=1e-6, dtype=tf.float32, validate_args=False,
               name="act_norm"):
    parameters = dict(locals())
    if not isinstance(num_channels, int) or num_channels <= 0:
      raise ValueError(f"ActNorm: num_channels must be a positive int, got {num_channels!r}.")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype)
    self._num_channels = num_channels
    self._epsilon = epsilon
    with tf.name_scope(self.name):
      self.loc = tf.Variable(tf.zeros([num_channels], dtype), name="loc")
      self.log_scale = tf.Variable(tf.zeros([num_channels], dtype), name="log_scale")
      self.initialized = tf.Variable(False, trainable=False, name="initialized")

  @property
  def num_channels(self):
    return self._num_channels

  def initialize(self, y):
    """Sets loc/log_scale from the batch `y` [..., H, W, C] and marks the layer initialised."""
    y = base.check_image(y, self.name, channels=self._num_channels)
    y = tf.cast(y, self.dtype)
    axes = list(range(y.shape.rank - 1))
    mean, variance = tf.nn.moments(y, axes=axes)
    return tf.group(
        self.loc.assign(mean),
        self.log_scale.assign(-tf.math.log(tf.sqrt(variance) + self._epsilon)),
        self.initialized.assign(True))

  def _maybe_initialize(self, y):
    """Initialises from `y` if not yet done; returns ops to depend on (graph mode)."""
    if tf.executing_eagerly():
      if not bool(self.initialized.numpy()):
        self.initialize(y)
      return []
    if tf.distribute.has_strategy() and not tf.distribute.in_cross_replica_context():
      return []  # A replica cannot initialise alone; training code initialises beforehand.
    init = tf.cond(self.initialized, lambda: tf.constant(False),
                   lambda: _run_then_true(lambda: self.initialize(y)))
    return [init]

  def _inverse_and_log_det_map(self, y):
    y = base.check_image(y, self.name, channels=self._num_channels)
    deps = self._maybe_initialize(y)
    with tf.control_dependencies(deps):
      log_scale = tf.identity(self.log_scale)
      loc = tf.identity(self.loc)
    x = (y - loc) * tf.exp(log_scale)
    return x, tf.broadcast_to(log_scale, tf.shape(x))

  def _forward_and_log_det(self, x):
    x = base.check_image(x, self.name, channels=self._num_channels)
    return x * tf.exp(-self.log_scale) + self.loc, self._forward_log_det_jacobian(x)

  def _forward_log_det_jacobian(self, x):  # needs no transform
    hw = tf.cast(tf.reduce_prod(tf.shape(x)[-3:-1]), x.dtype)
    return -hw * tf.reduce_sum(self.log_scale)


def _run_then_true(fn):
  with tf.control_dependencies([fn()]):
    return tf.constant(True)
