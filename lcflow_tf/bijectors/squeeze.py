"""Squeeze: 2x2 space-to-depth (image -> latent) and depth-to-space (latent -> image)."""

import tensorflow as tf

from lcflow_tf.bijectors import base


def _times(dim, k):
  return None if dim is None else dim * k


def _divided(dim, k):
  return None if dim is None else dim // k


class Squeeze(base.ImageBijector):
  """Trades spatial resolution for channels, as in RealNVP (arXiv 1605.08803, sec. 3.6).

  `inverse` (image -> latent direction): [..., H, W, C] -> [..., H/2, W/2, 4C] with
  `tf.nn.space_to_depth(block_size=2)`; `forward`: the exact rearrangement back. Volume
  preserving (log-det 0); a per-element log-det map is moved exactly like the data.

  Args:
    validate_args: unused beyond TFP's own checks (shapes are checked statically).
    name: name of the bijector.

  Raises:
    ValueError: when an input is not a floating tensor of rank >= 3, its H or W is odd
      (inverse) or its C is not divisible by 4 (forward).
  """

  def __init__(self, validate_args=False, name="squeeze"):
    parameters = dict(locals())
    super().__init__(validate_args=validate_args, parameters=parameters, name=name,
                     is_constant_jacobian=True)

  def _check_image_side(self, shape):
    shape = tf.TensorShape(shape)
    if shape.rank is not None and shape.rank >= 3:
      h, w = shape[-3], shape[-2]
      if (h is not None and h % 2) or (w is not None and w % 2):
        raise ValueError(f"{self.name}: squeezing needs even H and W, got event shape "
                         f"{shape[-3:].as_list()}.")

  def _check_latent_side(self, shape):
    shape = tf.TensorShape(shape)
    if shape.rank is not None and shape.rank >= 3 and shape[-1] is not None:
      if shape[-1] % 4:
        raise ValueError(f"{self.name}: un-squeezing needs C divisible by 4, got event shape "
                         f"{shape[-3:].as_list()}.")

  @staticmethod
  def _space_to_depth(x):
    flat, batch_shape = base.flatten_batch(x)
    return base.unflatten_batch(tf.nn.space_to_depth(flat, 2), batch_shape)

  @staticmethod
  def _depth_to_space(x):
    flat, batch_shape = base.flatten_batch(x)
    return base.unflatten_batch(tf.nn.depth_to_space(flat, 2), batch_shape)

  def _forward(self, x):
    x = base.check_image(x, self.name)
    self._check_latent_side(x.shape)
    return self._depth_to_space(x)

  def _inverse(self, y):
    y = base.check_image(y, self.name)
    self._check_image_side(y.shape)
    return self._space_to_depth(y)

  def _inverse_and_log_det_map(self, y):
    x = self._inverse(y)
    return x, tf.zeros_like(x)

  def _forward_and_log_det(self, x):
    return self._forward(x), self._forward_log_det_jacobian(x)

  def _forward_log_det_jacobian(self, x):
    return tf.zeros([], dtype=x.dtype)

  def _inverse_log_det_jacobian(self, y):
    return tf.zeros([], dtype=y.dtype)

  def _transport_inverse(self, a):
    return self._inverse(a)

  def _transport_forward(self, a):
    return self._forward(a)

  def _forward_event_shape(self, input_shape):
    self._check_latent_side(input_shape)
    if input_shape.rank is None:
      return input_shape
    h, w, c = input_shape[-3:]
    return input_shape[:-3].concatenate([_times(h, 2), _times(w, 2), _divided(c, 4)])

  def _inverse_event_shape(self, output_shape):
    self._check_image_side(output_shape)
    if output_shape.rank is None:
      return output_shape
    h, w, c = output_shape[-3:]
    return output_shape[:-3].concatenate([_divided(h, 2), _divided(w, 2), _times(c, 4)])

  def _forward_event_shape_tensor(self, input_shape):
    return tf.concat([input_shape[:-3], input_shape[-3:-1] * 2, input_shape[-1:] // 4], 0)

  def _inverse_event_shape_tensor(self, output_shape):
    return tf.concat([output_shape[:-3], output_shape[-3:-1] // 2, output_shape[-1:] * 4], 0)
