"""A junction that factors nothing out: the junctions of a `nosplit` pilot's flow."""

import tensorflow as tf

from lcflow_tf.bijectors import base


class OpenJunction(base.ImageBijector):
  """Passes every channel of an [H, W, C] tensor on to the deeper levels.

  Stands where a `FactorOut` would be, in the pilot flow of the `nosplit` protocol
  (`lcflow_tf.pilots`; `Flow(..., open_junctions_from=j)`): the likelihood-contribution
  statistics of the junction are collected from the tensor reaching it
  (`recorder.at_junction`), but no element leaves there, so no split has
  shaped them. `inverse(h) = inner.inverse(h)`, `forward(z) = inner.forward(z)`, and the
  per-element log-det map is `inner`'s (plus the carried map, unchanged here). `inner` sees
  all C channels, twice what it would see behind a `FactorOut`.

  Args:
    inner: shape-preserving bijector on [H, W, C] (the deeper levels).
    event_shape: (H, W, C) of the input.
    dtype: dtype of the images.
    validate_args: unused beyond TFP's checks.
    name: name of the bijector.

  Raises:
    ValueError: for an event shape that is not three positive ints.
  """

  def __init__(self, inner, event_shape, dtype=tf.float32, validate_args=False,
               name="open_junction"):
    parameters = dict(locals())
    event_shape = base.check_event_shape(event_shape, "OpenJunction")
    super().__init__(validate_args=validate_args, parameters=parameters, name=name, dtype=dtype)
    self._inner = inner
    self._event_shape = event_shape

  @property
  def inner(self):
    return self._inner

  @property
  def event_shape(self):
    return self._event_shape

  @property
  def permutation(self):
    """None: nothing is factored out here, so there is no split order."""
    return None

  def _inverse_with_carried_map(self, y, carried, recorder):
    y = base.check_image(y, self.name, expected_shape=self._event_shape)
    if recorder is not None:
      recorder.at_junction(self, y, carried)
    return base.inverse_with_log_det_map(self._inner, y, carried, recorder)

  def _inverse_and_log_det_map(self, y):
    return self._inverse_with_carried_map(y, tf.zeros_like(y), None)

  def _inverse(self, y):
    y = base.check_image(y, self.name, expected_shape=self._event_shape)
    return self._inner.inverse(y)

  def _forward_and_log_det(self, x):
    # The inner levels in one pass (every network once), as FactorOut does.
    x = base.check_image(x, self.name, expected_shape=self._event_shape)
    return base.forward_with_log_det(self._inner, x)
