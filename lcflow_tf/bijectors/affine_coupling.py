"""Affine and additive coupling layers with channel or checkerboard masks."""

import tensorflow as tf

from lcflow_tf.bijectors import base

MASKS = ("channel", "checkerboard")
KINDS = ("affine", "additive")
SCALE_FNS = ("sigmoid", "tanh")


def conditioner_channels(num_channels, mask, kind):
  """(input channels, output channels) the conditioner of such a coupling must have."""
  if mask == "channel":
    n_in = num_channels // 2
    n_out = num_channels - n_in
  else:
    n_in, n_out = num_channels + 1, num_channels
  return n_in, (2 * n_out if kind == "affine" else n_out)


class AffineCoupling(base.ImageBijector):
  """RealNVP / Glow coupling (arXiv 1605.08803 sec. 3.3-3.4; arXiv 1807.03039 sec. 3.3).

  The image is cut into a conditioning part `a` and a transformed part `b` by a mask. With
  `(shift, raw) = conditioner(a)`, `inverse` (image -> latent) computes
  `x_b = (y_b + shift) * scale`, `x_a = y_a`, and `forward` undoes it. The scale is
    * `"sigmoid"`: `log scale = log sigmoid(raw + 2)` (Glow), in (-inf, 0]; with
      `max_log_scale = B` it is bounded softly, `B * tanh(log sigmoid(raw + 2) / B)`, in
      (-B, 0]: the same as Glow's near the identity, but `forward` (the sampling direction)
      can amplify an element by at most e^B per coupling;
    * `"tanh"`:    `log scale = B * tanh(raw)`, in (-B, B) (RealNVP's bounded log-scale;
      B = `max_log_scale`, default 2);
  and `kind="additive"` uses `scale = 1` (NICE), so the conditioner returns only `shift`.
  With `max_shift = S` the shift is bounded softly too, `S * tanh(shift / S)`. Both bounds
  keep an input far outside the training data (a tail latent when sampling, an unusual
  image when encoding) from being amplified without limit by the conditioner networks'
  linear growth, coupling after coupling.

  Masks:
    * `"channel"`: `a` = first half of the channels when `parity == 0`, second half otherwise.
      The conditioner maps [N, H, W, C//2] -> [N, H, W, 2 * (C - C//2)] (affine).
    * `"checkerboard"`: `a` = the locations with `(h + w + parity) % 2 == 0`; the conditioner
      sees `concat(y * mask, mask)` [N, H, W, C + 1] and returns [N, H, W, 2C] (affine), used
      only on the other locations.

  Per-element inverse log-det: `log(scale)` on the transformed elements, 0 on the
  conditioning ones.

  The conditioner runs once per call, in either direction, for the transform and its
  log-det together (`forward`, `forward_and_log_det`, `inverse_and_log_det_map`, and each
  TFP log-det call). It is any callable on 4-D tensors (typically a Keras
  network from `lcflow_tf.networks` whose last layer is zero-initialised, so a fresh coupling
  is close to the identity); its variables are reported by `network_variables`.

  Args:
    conditioner: callable as described above.
    event_shape: (H, W, C).
    mask: `"channel"` or `"checkerboard"`.
    parity: 0 or 1, which part conditions.
    kind: `"affine"` or `"additive"`.
    scale_fn: `"sigmoid"` or `"tanh"` (affine only).
    max_log_scale: B above: `None` means 2 for `"tanh"` and no bound for `"sigmoid"`;
      otherwise a number > 0.
    max_shift: S above, a number > 0, or `None` for an unbounded shift.
    dtype: dtype of the images.
    validate_args: unused beyond TFP's checks.
    name: name of the bijector.

  Raises:
    ValueError: for unknown mask/kind/scale_fn, parity not in {0, 1}, a channel mask on fewer
      than 2 channels, bounds that are not positive numbers, or inputs whose event shape
      differs from `event_shape`.
  """

  def __init__(self, conditioner, event_shape, mask="channel", parity=0, kind="affine",
               scale_fn="sigmoid", max_log_scale=None, max_shift=None, dtype=tf.float32,
               validate_args=False, name="affine_coupling"):
    parameters = dict(locals())
    event_shape = tuple(event_shape)
    if len(event_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in event_shape):
      raise ValueError("AffineCoupling: event_shape must be three positive ints (H, W, C), got "
                       f"{event_shape!r}.")
    for arg, value, allowed in (("mask", mask, MASKS), ("kind", kind, KINDS),
                                ("scale_fn", scale_fn, SCALE_FNS), ("parity", parity, (0, 1))):
      if value not in allowed:
        raise ValueError(f"AffineCoupling: {arg} must be one of {allowed}, got {value!r}.")
    if mask == "channel" and event_shape[-1] < 2:
      raise ValueError("AffineCoupling: a channel mask needs at least 2 channels, got event "
                       f"shape {list(event_shape)}; use mask='checkerboard' or squeeze first.")
    for arg, value in (("max_log_scale", max_log_scale), ("max_shift", max_shift)):
      if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                or not 0 < value < float("inf")):
        raise ValueError(f"AffineCoupling: {arg} must be None or a finite number > 0, got "
                         f"{value!r}.")
    if not callable(conditioner):
      raise TypeError(f"AffineCoupling: conditioner must be callable, got {conditioner!r}.")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype)
    self._conditioner = conditioner
    self._event_shape = event_shape
    self._mask_kind = mask
    self._parity = parity
    self._kind = kind
    self._scale_fn = scale_fn
    if max_log_scale is None and scale_fn == "tanh":
      max_log_scale = 2.0
    self._max_log_scale = None if max_log_scale is None else float(max_log_scale)
    self._max_shift = None if max_shift is None else float(max_shift)

  @property
  def conditioner(self):
    return self._conditioner

  @property
  def network_variables(self):
    """Trainable variables of the conditioner (Keras 3 variables are invisible to tf.Module)."""
    return list(getattr(self._conditioner, "trainable_variables", []))

  @property
  def networks(self):
    """The networks this bijector holds (its conditioner), for `collect_variables`."""
    return (self._conditioner,)

  def _checkerboard(self, dtype):
    h, w, _ = self._event_shape
    parity = (tf.range(h)[:, None] + tf.range(w)[None, :] + self._parity) % 2
    return tf.cast(tf.equal(parity, 0), dtype)[:, :, None]  # 1 on conditioning locations

  def _split(self, t):
    c_a = self._event_shape[-1] // 2
    if self._parity == 0:
      return t[..., :c_a], t[..., c_a:]
    return t[..., t.shape[-1] - c_a:], t[..., :t.shape[-1] - c_a]

  def _merge(self, a, b):
    return tf.concat([a, b], -1) if self._parity == 0 else tf.concat([b, a], -1)

  def _shift_and_log_scale(self, cond_input):
    """Runs the conditioner once; returns (shift, log_scale or None)."""
    flat, batch_shape = base.flatten_batch(cond_input)
    out = tf.cast(self._conditioner(flat), cond_input.dtype)
    out = base.unflatten_batch(out, batch_shape)
    if self._kind == "additive":
      return _soft_bound(out, self._max_shift), None
    shift, raw = tf.split(out, 2, axis=-1)
    if self._scale_fn == "sigmoid":
      log_scale = _soft_bound(tf.math.log_sigmoid(raw + 2.0), self._max_log_scale)
    else:
      log_scale = self._max_log_scale * tf.tanh(raw)
    return _soft_bound(shift, self._max_shift), log_scale

  def _conditioning_input(self, t):
    if self._mask_kind == "channel":
      return self._split(t)[0]
    mask = self._checkerboard(t.dtype)
    masked = t * mask
    return tf.concat([masked, tf.broadcast_to(mask, tf.concat([tf.shape(t)[:-1], [1]], 0))], -1)

  def _apply(self, t, direction):
    """Returns (output, per-element inverse log-det map)."""
    t = base.check_image(t, self.name, expected_shape=self._event_shape)
    shift, log_scale = self._shift_and_log_scale(self._conditioning_input(t))
    if self._mask_kind == "channel":
      t_a, t_b = self._split(t)
      out_b, ld_b = self._transform(t_b, shift, log_scale, direction)
      return self._merge(t_a, out_b), self._merge(tf.zeros_like(t_a), ld_b)
    mask = self._checkerboard(t.dtype)
    out, ld = self._transform(t, shift, log_scale, direction)
    out = mask * t + (1.0 - mask) * out
    return out, (1.0 - mask) * ld

  @staticmethod
  def _transform(t, shift, log_scale, direction):
    if log_scale is None:
      out = t + shift if direction == "inverse" else t - shift
      return out, tf.zeros_like(t)
    if direction == "inverse":
      return (t + shift) * tf.exp(log_scale), log_scale
    return t * tf.exp(-log_scale) - shift, log_scale

  def _inverse_and_log_det_map(self, y):
    return self._apply(y, "inverse")

  def _forward_and_log_det(self, x):
    # The conditioning part is the same on both sides, so the scale is known at x: the
    # forward log-det is minus the inverse map at forward(x), from the same network call.
    y, inverse_map = self._apply(x, "forward")
    return y, -tf.reduce_sum(inverse_map, axis=[-3, -2, -1])


def _soft_bound(t, bound):
  """`bound * tanh(t / bound)`: ~`t` near 0, never beyond `bound` in size; `t` if no bound."""
  if bound is None:
    return t
  return bound * tf.tanh(t / bound)
