"""Shared machinery of the image bijectors: fused log-dets and per-element log-det maps.

Every bijector in this package maps images NHWC with event rank 3 and follows TFP's
direction convention (`forward`: latent -> image, `inverse`: image -> latent). Beyond TFP's
scalar log-det, each one can also report its log-det *per element* of the latent-side tensor
(`inverse_log_det_map`) and move an already carried map the way it moves the data
(squeezes and permutations). These maps are what the likelihood-contribution (LC) split is
built on (see `lcflow_tf.lc`).

Transform and log-det in one pass, both directions (as distrax's `forward_and_log_det` /
`inverse_and_log_det`): a subclass implements `_inverse_and_log_det_map(y)` and
`_forward_and_log_det(x)`, and TFP's hooks (`_inverse`, `_forward`, and the log-dets that
need the transform) are derived from them, so no network runs twice inside one call. The
walkers `inverse_with_log_det_map` and `forward_with_log_det` carry that through whole
compositions (`tfb.Chain`, `tfb.Invert`, a junction's inner levels): every
coupling and prior network runs once per pass.

What TFP's own composite entry points do with these bijectors: `tfb.Chain` computes
`forward_log_det_jacobian(x)` by calling `forward` and `forward_log_det_jacobian` of each
part separately, and `TransformedDistribution.log_prob(y)` / `experimental_sample_and_log_prob`
call the whole chain's `inverse`/`forward` and then its log-det; TFP avoids the repeated work
with its tensor-keyed cache (`Bijector._cache`), which this package bypasses
(`_NoCacheDescriptor`: the variables change during training, so a cached result could be
stale). Through those TFP paths each part's network therefore runs once per TFP call it
receives (up to 3 times for a coupling of a chain's `log_prob`); use the walkers, or `Flow`'s
`log_prob` / `sample_and_log_prob`, which are built on them, for one pass.

The per-element rule of each bijector is documented in its module. The invariants, tested for
every bijector: `reduce_sum(inverse_log_det_map(y)) == inverse_log_det_jacobian(y)` and
`forward_and_log_det(x) == (forward(x), forward_log_det_jacobian(x))`.
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfb = tfp.bijectors

EVENT_NDIMS = 3

# tfb.Chain(...) / tfb.Invert(...) return the private non-composite-tensor base classes when
# their parts hold variables; match those bases.
_CHAIN_TYPE = next(c for c in tfb.Chain.__mro__ if c.__name__ == "_Chain")
_INVERT_TYPE = next(c for c in tfb.Invert.__mro__ if c.__name__ == "_Invert")


class _UncachedCalls:
  """Stands in for TFP's input/output cache: every call recomputes.

  TFP's cache keys on the input tensor and on the bijector's parameters. Our bijectors hold
  variables that change during training, so a cached result could be stale, and two
  instances with equal constructor arguments would share entries. Recomputing is cheap next
  to that risk; the fused paths (`inverse_with_log_det_map`, `forward_with_log_det`) run
  each network once anyway.
  """

  def __init__(self, bijector):
    self._bijector = bijector

  def forward(self, x, **kwargs):
    return self._bijector._forward(x, **kwargs)  # pylint: disable=protected-access

  def inverse(self, y, **kwargs):
    return self._bijector._inverse(y, **kwargs)  # pylint: disable=protected-access

  def forward_attributes(self, x, **kwargs):
    del x, kwargs
    return {}

  def inverse_attributes(self, y, **kwargs):
    del y, kwargs
    return {}


class _NoCacheDescriptor:

  def __get__(self, bijector, owner):
    return _UncachedCalls(bijector)



class ImageBijector(tfb.Bijector):
  """Base class for the package's bijectors over images [..., H, W, C].

  Subclasses implement
    * `_inverse_and_log_det_map(y)`: the inverse image and the per-element inverse log-det
      map (shaped like the inverse image);
    * `_forward_and_log_det(x)`: the forward image and the forward log-det summed over the
      event (broadcastable to the batch shape);
  and, when they move elements around, `_transport_inverse(a)` / `_transport_forward(a)`.
  TFP's hooks `_inverse`, `_forward`, `_inverse_log_det_jacobian` and
  `_forward_log_det_jacobian` are derived from those two, so a transform and its log-det
  always agree and each comes from one pass; a subclass may override a hook with a cheaper
  path that computes less (e.g. a log-det that does not need the transform).
  """

  _cache = _NoCacheDescriptor()

  def __init__(self, validate_args=False, parameters=None, name=None, is_constant_jacobian=False,
               dtype=None):
    super().__init__(
        forward_min_event_ndims=EVENT_NDIMS,
        inverse_min_event_ndims=EVENT_NDIMS,
        is_constant_jacobian=is_constant_jacobian,
        dtype=dtype,
        validate_args=validate_args,
        parameters=parameters,
        name=name)

  def _get_parameterization(self):
    # Instances are never interchangeable: each holds its own variables.
    return id(self)

  # --- the two fused hooks ------------------------------------------------------------------
  def _inverse_and_log_det_map(self, y):
    raise NotImplementedError

  def _forward_and_log_det(self, x):
    raise NotImplementedError

  def _transport_inverse(self, a):
    """Moves a map given in image-side coordinates to latent-side coordinates."""
    return a

  def _transport_forward(self, a):
    """Moves a map given in latent-side coordinates to image-side coordinates."""
    return a

  def _convert(self, t):
    return tf.convert_to_tensor(t, dtype_hint=self.dtype or tf.float32)

  # --- public fused calls -------------------------------------------------------------------
  def inverse_and_log_det_map(self, y):
    """Returns `(x, a)`: `x = inverse(y)` and the per-element inverse log-det map `a`.

    `a` has the shape of `x`; `reduce_sum(a, [-3, -2, -1])` equals
    `inverse_log_det_jacobian(y, event_ndims=3)`. The network of a coupling runs once.
    """
    with tf.name_scope(self.name):
      return self._inverse_and_log_det_map(self._convert(y))

  def inverse_and_log_det(self, y):
    """Returns `(inverse(y), inverse_log_det_jacobian(y, event_ndims=3))` from one pass.

    The log-det has the batch shape of `y` (`y.shape[:-3]`).
    """
    x, a = self.inverse_and_log_det_map(y)
    return x, tf.reduce_sum(a, axis=[-3, -2, -1])

  def forward_and_log_det(self, x):
    """Returns `(forward(x), forward_log_det_jacobian(x, event_ndims=3))` from one pass.

    The log-det has the batch shape of `x` (`x.shape[:-3]`); every network runs once.
    """
    with tf.name_scope(self.name):
      x = self._convert(x)
      y, fldj = self._forward_and_log_det(x)
      return y, tf.broadcast_to(fldj, tf.shape(x)[:-3])

  def _inverse_with_carried_map(self, y, carried, recorder):
    """Inverse of `y` with `carried` (a map in `y`'s coordinates) moved along and own terms added.

    Composite bijectors (the junctions: `FactorOut`, `OpenJunction`) override this to recurse
    and to report to `recorder`; elementwise ones need not.
    """
    del recorder
    x, own = self._inverse_and_log_det_map(y)
    with tf.name_scope("carried_map"):
      return x, self._transport_inverse(carried) + own

  def inverse_log_det_map(self, y):
    """Per-element inverse log-det map (shaped like `inverse(y)`)."""
    return self.inverse_and_log_det_map(y)[1]

  # --- TFP hooks derived from the fused ones -----------------------------------------------
  def _inverse(self, y):
    return self._inverse_and_log_det_map(y)[0]

  def _inverse_log_det_jacobian(self, y):
    return tf.reduce_sum(self._inverse_and_log_det_map(y)[1], axis=[-3, -2, -1])

  def _forward(self, x):
    return self._forward_and_log_det(x)[0]

  def _forward_log_det_jacobian(self, x):
    return self._forward_and_log_det(x)[1]


def flatten_batch(x):
  """Reshapes [..., H, W, C] to [N, H, W, C]; returns the tensor and the batch shape."""
  batch_shape = tf.shape(x)[:-3]
  flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[-3:]], axis=0))
  return flat, batch_shape


def unflatten_batch(x, batch_shape):
  """Inverse of `flatten_batch`."""
  return tf.reshape(x, tf.concat([batch_shape, tf.shape(x)[1:]], axis=0))


def check_event_shape(event_shape, owner):
  """`event_shape` as a tuple of three positive ints (H, W, C), or a ValueError naming `owner`."""
  event_shape = tuple(event_shape)
  if len(event_shape) != 3 or not all(isinstance(d, int) and d > 0 for d in event_shape):
    raise ValueError(f"{owner}: event_shape must be three positive ints (H, W, C), got "
                     f"{event_shape!r}.")
  return event_shape


def check_image(x, name, expected_shape=None, channels=None):
  """Raises ValueError unless `x` is a floating tensor of rank >= 3 with the right event shape.

  Args:
    x: the tensor a bijector received.
    name: name of the bijector, for the message.
    expected_shape: optional (H, W, C) the event must have (None entries are free).
    channels: optional required channel count.
  """
  x = tf.convert_to_tensor(x)
  if not x.dtype.is_floating:
    raise ValueError(
        f"{name}: expected floating images (float32/float64 intensities in [0, 1)), got dtype "
        f"{x.dtype.name}; convert integer images with lcflow_tf.data.dequantize first.")
  if x.shape.rank is not None and x.shape.rank < 3:
    raise ValueError(
        f"{name}: expected images of shape [..., H, W, C] (rank >= 3), got shape {x.shape}.")
  if expected_shape is not None and x.shape.rank is not None:
    got = tuple(x.shape[-3:])
    for e, g in zip(expected_shape, got):
      if e is not None and g is not None and e != g:
        raise ValueError(f"{name}: expected event shape [H, W, C] = {list(expected_shape)}, "
                         f"got {list(got)} (full shape {x.shape}).")
  if channels is not None and x.shape.rank is not None and x.shape[-1] is not None:
    if x.shape[-1] != channels:
      raise ValueError(f"{name}: expected {channels} channels, got {x.shape[-1]} "
                       f"(shape {x.shape}).")
  return x



def inverse_with_log_det_map(bijector, y, carried=None, recorder=None):
  """Image -> latent through any composition of this package's bijectors, keeping the map.

  Walks `tfb.Chain`, `tfb.Invert` (of our non-composite bijectors), `tfb.Identity` and every
  `ImageBijector`, so hand-built TFP chains work as well as `build_flow`'s. Each part runs in
  a name scope of its name (ops are named `<chain>/<bijector>/...`, which is how profiles
  attribute time to parts of the model).

  Args:
    bijector: the bijector whose `inverse` maps images to latents.
    y: images [..., H, W, C].
    carried: optional per-element log-det map already accumulated, shaped like `y`
      (default zeros).
    recorder: optional object with methods `at_junction(junction, h, a)` (the tensor reaching
      a junction and its carried map) and `leaving(junction, z, a)` (the factored
      elements after their prior transform and their map). See `lcflow_tf.lc`.

  Returns:
    `(x, a)`: `bijector.inverse(y)` and the per-element map, shaped like `x`, whose sum over
    the event equals `bijector.inverse_log_det_jacobian(y, event_ndims=3)` plus the sum of
    `carried`.

  Raises:
    TypeError: for a bijector that has no per-element log-det rule.
  """
  if carried is None:
    carried = tf.zeros_like(y)
  if isinstance(bijector, tfb.Identity):
    return y, carried
  if not isinstance(bijector, (_CHAIN_TYPE, _INVERT_TYPE, ImageBijector)) or (
      isinstance(bijector, _INVERT_TYPE) and not isinstance(bijector.bijector, ImageBijector)):
    raise TypeError(
        f"inverse_with_log_det_map: no per-element log-det rule for {type(bijector).__name__} "
        f"({bijector.name!r}); allowed: lcflow_tf.bijectors.*, tfb.Chain, tfb.Invert of an "
        "lcflow_tf bijector, tfb.Identity.")
  with tf.name_scope(bijector.name):
    if isinstance(bijector, _CHAIN_TYPE):
      # Chain([b1, ..., bn]).inverse applies b1.inverse first.
      for part in bijector.bijectors:
        y, carried = inverse_with_log_det_map(part, y, carried, recorder)
      return y, carried
    if isinstance(bijector, _INVERT_TYPE):
      # Invert(b).inverse is b.forward; the map is minus b's inverse map at the result, which
      # lives in y's coordinates (b's latent side). b's network, if any, runs twice here (its
      # forward, then its map); build_flow inverts only squeezes, which have none.
      inner = bijector.bijector
      x = inner._forward(y)  # pylint: disable=protected-access
      own = inner._inverse_and_log_det_map(x)[1]  # pylint: disable=protected-access
      with tf.name_scope("carried_map"):
        return x, inner._transport_forward(carried - own)  # pylint: disable=protected-access
    # pylint: disable-next=protected-access
    return bijector._inverse_with_carried_map(y, carried, recorder)


def forward_with_log_det(bijector, x):
  """Latent -> image through any composition, with the forward log-det, in one pass.

  The forward counterpart of `inverse_with_log_det_map` (the log-det is summed over the
  event: nothing downstream needs a per-element forward map). Walks `tfb.Chain`,
  `tfb.Invert`, `tfb.Identity` and every `ImageBijector` with their fused hooks, so every
  network runs once; any other TFP bijector is called through its public `forward` and
  `forward_log_det_jacobian` (correct, but not fused).

  Args:
    bijector: the bijector whose `forward` maps latents to images.
    x: latents [..., H, W, C].

  Returns:
    `(y, fldj)`: `bijector.forward(x)` and `bijector.forward_log_det_jacobian(x,
    event_ndims=3)`, the latter with the batch shape of `x` (`x.shape[:-3]`).
  """
  x = tf.convert_to_tensor(x, dtype_hint=bijector.dtype or tf.float32)
  y, fldj = _forward_walk(bijector, x)
  return y, tf.broadcast_to(fldj, tf.shape(x)[:-3])


def _forward_walk(bijector, x):
  """`forward_with_log_det` with the log-det only broadcastable to the batch shape."""
  with tf.name_scope(bijector.name):
    if isinstance(bijector, _CHAIN_TYPE):
      # Chain([b1, ..., bn]).forward applies bn.forward first.
      total = 0.0
      for part in reversed(bijector.bijectors):
        x, fldj = _forward_walk(part, x)
        total += fldj
      return x, tf.convert_to_tensor(total, x.dtype)
    if isinstance(bijector, tfb.Identity):
      return x, tf.zeros([], x.dtype)
    if isinstance(bijector, _INVERT_TYPE) and isinstance(bijector.bijector, ImageBijector):
      y, a = bijector.bijector._inverse_and_log_det_map(x)  # pylint: disable=protected-access
      return y, tf.reduce_sum(a, axis=[-3, -2, -1])
    if isinstance(bijector, ImageBijector):
      return bijector._forward_and_log_det(x)  # pylint: disable=protected-access
    return bijector.forward(x), bijector.forward_log_det_jacobian(x, event_ndims=EVENT_NDIMS)


def _unique(variables):
  """`variables` without repeats (by identity), in first-seen order, as a tuple."""
  return tuple({id(v): v for v in variables}.values())


def collect_trainable_variables(bijector):
  """Every trainable variable of a bijector and of the networks its parts hold.

  `tf.Module.trainable_variables` does not see the variables of Keras 3 layers held by a
  bijector, so this adds each part's `network_variables` (couplings, learned priors).
  Duplicates are dropped; order is stable.
  """
  candidates = list(bijector.trainable_variables)
  for module in (bijector,) + tuple(bijector.submodules):
    candidates += getattr(module, "network_variables", [])
  return _unique(candidates)


def collect_variables(bijector):
  """Every variable of a bijector, trainable or not, and of the networks its parts hold.

  The bijectors' own `tf.Variable`s (e.g. ActNorm's `initialized`, the split permutations)
  come from `tf.Module.variables`; each part's `networks` (couplings' conditioners, learned
  priors) add all their variables, which for Keras 3 networks are `keras.Variable`s (returned
  as they are; their `.value` is the `tf.Variable` they wrap). Duplicates are dropped; order
  is stable.
  """
  candidates = list(bijector.variables)
  for module in (bijector,) + tuple(bijector.submodules):
    for network in getattr(module, "networks", ()):
      candidates += getattr(network, "variables", [])
  return _unique(candidates)
