"""The multi-scale junction: half of the channels leave, the other half go deeper."""

import tensorflow as tf

from lcflow_tf.bijectors import base

PRIORS = ("standard", "conditional")


class FactorOut(base.ImageBijector):
  """Factors out half of the channels of an [H, W, C] tensor (RealNVP sec. 3.6; Glow sec. 3).

  `inverse` (image -> latent), for an input `h`:
    1. `h = permutation.inverse(h)` if a `ChannelPermutation` is given (this is where the
       likelihood-contribution split chooses which channels stay, see `lcflow_tf.lc`);
    2. `kept, out = h[..., :C/2], h[..., C/2:]`;
    3. the factored part gets its prior as an affine map to a standard Normal:
       `"standard"` (RealNVP): `z_out = out`;
       `"conditional"` (Glow's learned prior): `(mean, raw) = prior_network(kept)`,
       `z_out = (out - mean) * exp(-log_sigma)` with `log_sigma = raw`, or, with
       `max_log_sigma = B`, `log_sigma = B * tanh(raw / B)` (sampling then scales a factored
       element by at most e^B);
    4. `z_kept = inner.inverse(kept)` (the deeper levels, any shape-preserving bijector);
    5. returns `concat([z_kept, z_out], -1)`, shaped like `h`.
  `forward` undoes the steps in reverse order; its log-det, `sum(log_sigma)` plus the inner
  levels' (walked with `forward_with_log_det`), comes from the same pass, so every network of
  the inner levels and the prior network run once (also in `forward_log_det_jacobian`).
  With this, a whole multi-scale flow is one bijector over a standard Normal base of the
  image's shape.

  Per-element inverse log-det: `-log_sigma` on the factored elements, plus whatever `inner`
  reports for the kept ones; the permutation moves the map like the data.

  Args:
    inner: bijector on [H, W, C/2] (what the kept half goes through).
    event_shape: (H, W, C) of the input; C must be even.
    prior: `"standard"` or `"conditional"`.
    prior_network: for `"conditional"`, a callable [N, H, W, C/2] -> [N, H, W, C]
      (mean and log_sigma, concatenated), last layer zero-initialised.
    permutation: optional `ChannelPermutation` of `event_shape` applied first.
    max_log_sigma: None (unbounded) or a number > 0 bounding |log_sigma| softly.
    dtype: dtype of the images.
    validate_args: unused beyond TFP's checks.
    name: name of the bijector.

  Raises:
    ValueError: for an odd channel count, an unknown prior, a missing prior network, a
      permutation of another shape, or a `max_log_sigma` that is not a number > 0.
  """

  def __init__(self, inner, event_shape, prior="conditional", prior_network=None,
               permutation=None, max_log_sigma=None, dtype=tf.float32, validate_args=False,
               name="factor_out"):
    parameters = dict(locals())
    event_shape = base.check_event_shape(event_shape, "FactorOut")
    if event_shape[-1] % 2:
      raise ValueError(f"FactorOut: cannot split an odd channel count in half; event shape "
                       f"{list(event_shape)} has C={event_shape[-1]}.")
    if prior not in PRIORS:
      raise ValueError(f"FactorOut: prior must be one of {PRIORS}, got {prior!r}.")
    if prior == "conditional" and not callable(prior_network):
      raise ValueError("FactorOut: prior='conditional' needs a callable prior_network, got "
                       f"{prior_network!r}.")
    if permutation is not None and tuple(permutation.event_shape) != event_shape:
      raise ValueError(f"FactorOut: permutation has event shape {permutation.event_shape}, "
                       f"expected {event_shape}.")
    if max_log_sigma is not None and (isinstance(max_log_sigma, bool)
                                      or not isinstance(max_log_sigma, (int, float))
                                      or not 0 < max_log_sigma < float("inf")):
      raise ValueError("FactorOut: max_log_sigma must be None or a finite number > 0, got "
                       f"{max_log_sigma!r}.")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype)
    self._max_log_sigma = None if max_log_sigma is None else float(max_log_sigma)
    self._inner = inner
    self._event_shape = event_shape
    self._prior = prior
    self._prior_network = prior_network if prior == "conditional" else None
    self._permutation = permutation

  @property
  def inner(self):
    return self._inner

  @property
  def permutation(self):
    return self._permutation

  @property
  def event_shape(self):
    return self._event_shape

  @property
  def network_variables(self):
    return list(getattr(self._prior_network, "trainable_variables", []))

  @property
  def networks(self):
    """The networks this bijector holds (the learned prior's, if any), for `collect_variables`."""
    return () if self._prior_network is None else (self._prior_network,)

  def _prior_params(self, kept):
    flat, batch_shape = base.flatten_batch(kept)
    out = base.unflatten_batch(tf.cast(self._prior_network(flat), kept.dtype), batch_shape)
    mean, log_sigma = tf.split(out, 2, axis=-1)
    if self._max_log_sigma is not None:
      log_sigma = self._max_log_sigma * tf.tanh(log_sigma / self._max_log_sigma)
    return mean, log_sigma

  def _halves(self, t):
    c = self._event_shape[-1] // 2
    return t[..., :c], t[..., c:]

  def _inverse_with_carried_map(self, y, carried, recorder):
    y = base.check_image(y, self.name, expected_shape=self._event_shape)
    if recorder is not None:
      recorder.at_junction(self, y, carried)
    if self._permutation is not None:
      y = self._permutation.inverse(y)
      with tf.name_scope("carried_map"):
        carried = self._permutation.inverse(carried)
    kept, out = self._halves(y)
    a_kept, a_out = self._halves(carried)
    if self._prior == "conditional":
      mean, log_sigma = self._prior_params(kept)
      out = (out - mean) * tf.exp(-log_sigma)
      a_out = a_out - log_sigma
    if recorder is not None:
      recorder.leaving(self, out, a_out)
    z_kept, a_kept = base.inverse_with_log_det_map(self._inner, kept, a_kept, recorder)
    if recorder is not None:
      recorder.reached_top(self, z_kept, a_kept)
    with tf.name_scope("carried_map"):
      a = tf.concat([a_kept, a_out], -1)
    return tf.concat([z_kept, out], -1), a

  def _inverse_and_log_det_map(self, y):
    return self._inverse_with_carried_map(y, tf.zeros_like(y), None)

  def _inverse(self, y):  # without the map
    y = base.check_image(y, self.name, expected_shape=self._event_shape)
    if self._permutation is not None:
      y = self._permutation.inverse(y)
    kept, out = self._halves(y)
    if self._prior == "conditional":
      mean, log_sigma = self._prior_params(kept)
      out = (out - mean) * tf.exp(-log_sigma)
    return tf.concat([self._inner.inverse(kept), out], -1)

  def _forward_and_log_det(self, x):
    """One pass: the inner levels through `forward_with_log_det`, the prior network once."""
    x = base.check_image(x, self.name, expected_shape=self._event_shape)
    z_kept, z_out = self._halves(x)
    kept, fldj = base.forward_with_log_det(self._inner, z_kept)
    out = z_out
    if self._prior == "conditional":
      mean, log_sigma = self._prior_params(kept)
      out = z_out * tf.exp(log_sigma) + mean
      fldj = fldj + tf.reduce_sum(log_sigma, axis=[-3, -2, -1])
    h = tf.concat([kept, out], -1)
    if self._permutation is not None:
      h = self._permutation.forward(h)
    return h, fldj
