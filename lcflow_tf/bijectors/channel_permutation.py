"""A fixed permutation of the channels at every spatial location."""

import numpy as np
import tensorflow as tf

from lcflow_tf.bijectors import base


class ChannelPermutation(base.ImageBijector):
  """Reorders the C channels of each location (h, w) by its own permutation.

  `inverse` (image -> latent): `x[..., h, w, j] = y[..., h, w, indices[h, w, j]]`; `forward`
  undoes it. Volume preserving (log-det 0); a per-element map moves like the data.

  `indices` [H, W, C] lives in a non-trainable int32 variable, so it can be set after
  construction (`set_indices`, e.g. from likelihood contributions, see `lcflow_tf.lc`) and is
  saved by checkpoints and SavedModels. It starts as the identity.

  Args:
    event_shape: (H, W, C) of the images.
    indices: optional initial permutations [H, W, C].
    dtype: dtype of the images.
    validate_args: unused beyond TFP's checks (indices are always validated when set).
    name: name of the bijector.

  Raises:
    ValueError: when `event_shape` is not three positive ints or `indices` is not a
      permutation of range(C) at every location.
  """

  def __init__(self, event_shape, indices=None, dtype=tf.float32, validate_args=False,
               name="channel_permutation"):
    parameters = dict(locals())
    event_shape = base.check_event_shape(event_shape, "ChannelPermutation")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype,
                     is_constant_jacobian=True)
    self._event_shape = event_shape
    h, w, c = event_shape
    identity = np.broadcast_to(np.arange(c, dtype=np.int32), (h, w, c))
    with tf.name_scope(self.name):
      self.indices = tf.Variable(identity, trainable=False, name="indices")
      self.inverse_indices = tf.Variable(identity, trainable=False, name="inverse_indices")
    if indices is not None:
      self.set_indices(indices)

  @property
  def event_shape(self):
    return self._event_shape

  def set_indices(self, indices):
    """Validates and stores new permutations [H, W, C] (numpy or tensor, eager)."""
    indices = np.asarray(indices)
    if indices.shape != self._event_shape:
      raise ValueError(f"{self.name}: indices must have shape {list(self._event_shape)}, got "
                       f"{list(indices.shape)}.")
    c = self._event_shape[-1]
    if not np.array_equal(np.sort(indices, axis=-1),
                          np.broadcast_to(np.arange(c), indices.shape)):
      raise ValueError(f"{self.name}: indices must be a permutation of 0..{c - 1} at every "
                       "location.")
    indices = indices.astype(np.int32)
    self.indices.assign(indices)
    self.inverse_indices.assign(np.argsort(indices, axis=-1).astype(np.int32))

  def _gather(self, t, indices):
    h, w, c = self._event_shape
    t = base.check_image(t, self.name, expected_shape=self._event_shape)
    offsets = tf.reshape(tf.range(h * w, dtype=tf.int32) * c, [h, w, 1])
    flat_index = tf.reshape(indices + offsets, [-1])
    batch_shape = tf.shape(t)[:-3]
    flat = tf.reshape(t, tf.concat([[-1], [h * w * c]], 0))
    out = tf.gather(flat, flat_index, axis=1)
    return tf.reshape(out, tf.concat([batch_shape, [h, w, c]], 0))

  def _inverse(self, y):
    return self._gather(y, self.indices)

  def _forward(self, x):
    return self._gather(x, self.inverse_indices)

  def _inverse_and_log_det_map(self, y):
    x = self._inverse(y)
    return x, tf.zeros_like(x)

  def _forward_and_log_det(self, x):
    return self._forward(x), self._forward_log_det_jacobian(x)

  def _transport_inverse(self, a):
    return self._inverse(a)

  def _transport_forward(self, a):
    return self._forward(a)

  def _inverse_log_det_jacobian(self, y):
    return tf.zeros([], dtype=y.dtype)

  def _forward_log_det_jacobian(self, x):
    return tf.zeros([], dtype=x.dtype)
