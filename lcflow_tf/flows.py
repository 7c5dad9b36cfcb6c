"""Multi-scale image flows: `build_flow` and the `Flow` object it returns.

Layout of the bijector (image -> latent, i.e. `inverse`), one level at a time:
  Glow (arXiv 1807.03039): squeeze -> K x [ActNorm -> InvertibleConv1x1 -> AffineCoupling]
      -> FactorOut(learned conditional prior; next levels) -> unsqueeze.
  RealNVP (arXiv 1605.08803): K x [ActNorm -> checkerboard coupling] -> squeeze
      -> K x [ActNorm -> channel coupling] -> FactorOut(standard Normal; next levels)
      -> unsqueeze; the last level is K + 1 checkerboard couplings.
    ActNorm stands in for RealNVP's batch normalisation.
Every level maps [H, W, C] to [H, W, C], so the whole model is one bijector over a standard
Normal base of the image's shape, and the latent of an image is shaped like the image.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from lcflow_tf import bijectors as lcb
from lcflow_tf import checks
from lcflow_tf import lc
from lcflow_tf import networks

tfb = tfp.bijectors
tfd = tfp.distributions

ARCHITECTURES = ("glow", "realnvp")
COUPLINGS = ("affine", "additive")
# Soft bounds that keep sampling and encoding finite (FlowConfig.max_*; 0 turns one off).
DEFAULT_BOUNDS = {"max_log_scale": {"sigmoid": 3.0, "tanh": 2.0}, "max_shift": 5.0,
                  "max_log_sigma": 3.0}
BOUND_FIELDS = ("max_log_scale", "max_shift", "max_log_sigma")


def original_scale_fn(architecture):
  """The coupling scale of `architecture`'s paper: Glow's `"sigmoid"`, RealNVP's `"tanh"`
  (what `FlowConfig(scale_fn=None)` and configurations saved without a scale mean)."""
  return "sigmoid" if architecture == "glow" else "tanh"


@dataclasses.dataclass(frozen=True)
class FlowConfig:
  """Everything `build_flow` needs; saved next to checkpoints to rebuild the same model.

  The sizes are the papers' (Glow: L=3, K=32, width 512). The couplings' scale is RealNVP's
  bounded `tanh` for both architectures: it measured lower bits/dim than Glow's `sigmoid`
  scale and keeps float32 round trips within 1e-5 at the peer size
  (docs/questions/robustness.md); `scale_fn="sigmoid"` gives Glow's own. `image_shape` may be
  left None in a configuration that does not know its data yet
  (`lcflow_tf.config.TrainConfig.model`); `Flow` needs it.
  """
  image_shape: tuple | None = None
  architecture: str = "glow"
  levels: int = 3
  steps_per_level: int = 32
  hidden_channels: int = 512
  coupling: str = "affine"
  split: str = "static"
  conv1x1: str = "lu"
  split_prior: str | None = None   # None: "conditional" for glow, "standard" for realnvp
  # "tanh": log scale B tanh(h), expands or contracts; "sigmoid": Glow's log sigmoid(h + 2),
  # contracts only (see AffineCoupling); None: the architecture's original (sigmoid for glow,
  # tanh for realnvp), which is what files of older versions mean.
  scale_fn: str | None = "tanh"
  resnet_blocks: int = 2
  seed: int = 0
  dtype: str = "float32"
  # Soft bounds (see AffineCoupling, FactorOut): None = the default below, 0 = unbounded.
  max_log_scale: float | None = None   # couplings' |log scale|
  max_shift: float | None = None       # couplings' |shift|
  max_log_sigma: float | None = None   # learned split prior's |log sigma|
  network_init: str = networks.DEFAULT_INIT  # conditioners' hidden layers (lcflow_tf.networks)

  def __post_init__(self):
    _validate(self)

  @property
  def resolved_split_prior(self):
    if self.split_prior is not None:
      return self.split_prior
    return "conditional" if self.architecture == "glow" else "standard"

  @property
  def resolved_scale_fn(self):
    if self.scale_fn is not None:
      return self.scale_fn
    return original_scale_fn(self.architecture)

  @property
  def resolved_max_log_scale(self):
    """The couplings' log-scale bound (None: unbounded; only Glow's sigmoid allows that)."""
    value = (DEFAULT_BOUNDS["max_log_scale"][self.resolved_scale_fn]
             if self.max_log_scale is None else self.max_log_scale)
    return value or None

  @property
  def resolved_max_shift(self):
    value = DEFAULT_BOUNDS["max_shift"] if self.max_shift is None else self.max_shift
    return value or None

  @property
  def resolved_max_log_sigma(self):
    value = DEFAULT_BOUNDS["max_log_sigma"] if self.max_log_sigma is None else self.max_log_sigma
    return value or None

  @property
  def num_squeezes(self):
    return self.levels if self.architecture == "glow" else self.levels - 1


def _validate(cfg):
  shape = cfg.image_shape
  if shape is not None and (not isinstance(shape, tuple) or len(shape) != 3
                            or not all(checks.is_int(d) and d > 0 for d in shape)):
    raise ValueError(f"image_shape must be three positive ints (H, W, C), got {shape!r}.")
  checks.check_choice("architecture", cfg.architecture, ARCHITECTURES)
  checks.check_choice("coupling", cfg.coupling, COUPLINGS)
  checks.check_choice("split", cfg.split, lc.SPLITS)
  checks.check_choice("conv1x1", cfg.conv1x1, lcb.invertible_conv1x1.PARAMETRIZATIONS)
  checks.check_choice("split_prior", cfg.split_prior, (None,) + lcb.factor_out.PRIORS)
  checks.check_choice("scale_fn", cfg.scale_fn, (None,) + lcb.affine_coupling.SCALE_FNS)
  checks.check_choice("dtype", cfg.dtype, ("float32", "float64"))
  checks.check_choice("network_init", cfg.network_init, networks.INITS)
  checks.check_int("levels", cfg.levels, 1)
  checks.check_int("steps_per_level", cfg.steps_per_level, 1)
  checks.check_int("hidden_channels", cfg.hidden_channels, 1)
  checks.check_int("resnet_blocks", cfg.resnet_blocks, 0)
  for name in BOUND_FIELDS:  # None: the default; 0: unbounded
    if getattr(cfg, name) is not None:
      checks.check_number(name, getattr(cfg, name), 0.0, low_open=False)
  if cfg.resolved_scale_fn == "tanh" and cfg.max_log_scale == 0:
    raise ValueError("max_log_scale=0 (unbounded) needs scale_fn='sigmoid'; the 'tanh' scale "
                     "is always bounded (give a number > 0).")
  factor = 2 ** cfg.num_squeezes
  if shape is not None and (shape[0] % factor or shape[1] % factor):
    raise ValueError(
        f"{cfg.architecture} with levels={cfg.levels} squeezes {cfg.num_squeezes} "
        f"times, so H and W must be divisible by {factor}; got image_shape {shape}.")


def check_open_junctions_from(junction, levels, caller=None):
  """Raises ValueError unless `junction` is a junction of a flow of `levels` (0..levels-2)."""
  if levels < 2:
    prefix = f"{caller}: " if caller else ""
    raise ValueError(f"{prefix}open_junctions_from={junction!r} needs levels >= 2 (a junction), "
                     f"got levels={levels}.")
  checks.check_int("open_junctions_from", junction, 0, levels - 2, caller=caller)


def build_flow(image_shape, architecture="glow", levels=3, steps_per_level=32,
               hidden_channels=512, coupling="affine", split="static", validate_args=False,
               open_junctions_from=None, **kwargs):
  """Builds a multi-scale RealNVP or Glow flow over images of `image_shape`.

  Args:
    image_shape: (H, W, C) of the images.
    architecture: `"glow"` or `"realnvp"` (layout in this module's docstring).
    levels: number of levels L (L - 1 junctions).
    steps_per_level: K, flow steps per level (RealNVP: K checkerboard + K channel couplings).
    hidden_channels: width of the conditioner networks.
    coupling: `"affine"` or `"additive"`.
    split: how each junction chooses the channels that stay, one of `lcflow_tf.lc.SPLITS`
      (`"static"`, `"random"`, `"lc"`, `"lc_reverse"`, `"logdet"`, `"logdet_reverse"`,
      `"variance"`).
    validate_args: check the values entering the flow at run time (TFP's name and default):
      images finite and in [0, 1), latents finite; a bad value raises instead of giving NaN
      or a meaningless density. A runtime setting of the returned `Flow`, not a field of
      `FlowConfig` (see `Flow`).
    open_junctions_from: None, or a junction j: build the pilot flow of the `nosplit`
      protocol of junction j (see `Flow`).
    **kwargs: the other fields of `FlowConfig` (conv1x1, split_prior, scale_fn,
      resnet_blocks, seed, dtype, max_log_scale, max_shift, max_log_sigma, network_init).

  Returns:
    A `Flow`.

  Raises:
    ValueError: for any argument outside its allowed values (the message names it), or H/W
      not divisible by 2**(number of squeezes).
    TypeError: if `validate_args` is not a bool.
  """
  return Flow(FlowConfig(image_shape=tuple(image_shape), architecture=architecture,
                         levels=levels, steps_per_level=steps_per_level,
                         hidden_channels=hidden_channels, coupling=coupling, split=split,
                         **kwargs), validate_args=validate_args,
              open_junctions_from=open_junctions_from)


class Flow(tf.Module):
  """A multi-scale flow over images in [0, 1) (dequantised intensities `(k + u) / bins`).

  Input checks follow TFP's `validate_args` convention. Always, and at no run-time cost: the
  inputs' dtype (float) and trailing shape (`image_shape`). With `validate_args=True` also
  their values, in every method that takes model-space images (`log_prob`, `encode`,
  `encode_with_log_det_map`, `log_prob_and_lc_batch`, `likelihood_contributions`,
  `initialize`, and `bits_per_dim` through `log_prob`): finite and in [0, 1); and in
  `decode`: finite latents. Eagerly a bad value raises `ValueError`; inside a `tf.function`
  an assertion fails at run time with `tf.errors.InvalidArgumentError`; both messages name
  the method, the rule, the count of non-finite values and the range of the others. The
  check costs a few element-wise ops and one reduction per call.

  With `validate_args=False` (the default, and what training uses) no check op is added:
  a NaN or infinite pixel gives a NaN log-density for its image, a value outside [0, 1) a
  finite but meaningless one, silently. Keep it False inside a `tf.function` compiled with
  XLA (`jit_compile=True`, the training step's option): XLA cannot compile the assertions.

  Args:
    config: a `FlowConfig` with `image_shape` set.
    validate_args: whether to check the input values (above). A runtime setting, not part of
      `config` (which is saved beside checkpoints); `astype` carries it to the copy.
    open_junctions_from: None (the model), or a junction j in 0..levels-2: the pilot flow of
      junction j of the `nosplit` protocol (`lcflow_tf.pilots`), in which junction j and every
      deeper one factor nothing out (`bijectors.OpenJunction`: every element goes on, the
      deeper levels see twice the channels), so that no split shapes the statistics collected
      at junction j. `astype` carries it to the copy.

  Raises:
    ValueError: if `config.image_shape` is None, or for an `open_junctions_from` that is not
      None or a junction of the flow.
    TypeError: if `validate_args` is not a bool.

  Attributes:
    config: the `FlowConfig` it was built from.
    validate_args: whether input values are checked (read-only; fixed at construction, so
      functions traced earlier never disagree with it).
    bijector: the whole model, a `tfb.Chain` (forward: latent -> image).
    distribution: `tfd.TransformedDistribution` of a standard Normal of the image's shape.
    junctions: the `FactorOut` bijectors, outermost level first (from `open_junctions_from`
      on, `OpenJunction`s).
    open_junctions_from: see Args.
    lc_statistics: running statistics at every junction (`lcflow_tf.lc.LCStatistics`).
  """

  def __init__(self, config, validate_args=False, open_junctions_from=None):
    if config.image_shape is None:
      raise ValueError("Flow: config.image_shape must be set (H, W, C), got None.")
    if not isinstance(validate_args, bool):
      raise TypeError(f"Flow: validate_args must be True or False, got {validate_args!r}.")
    if open_junctions_from is not None:
      check_open_junctions_from(open_junctions_from, config.levels, caller="Flow")
    super().__init__(name=f"{config.architecture}_flow")
    self._validate_args = validate_args
    self.open_junctions_from = open_junctions_from
    self.config = config
    self.image_shape = tuple(config.image_shape)
    self.dtype = tf.as_dtype(config.dtype)
    self._seed_counter = 0
    junctions = []  # filled innermost first while the levels are built
    with self.name_scope:
      self.bijector = self._build_level(0, self.image_shape, junctions)
      self.junctions = list(reversed(junctions))
      self.distribution = tfd.TransformedDistribution(
          tfd.Sample(tfd.Normal(tf.constant(0.0, self.dtype), tf.constant(1.0, self.dtype)),
                     sample_shape=self.image_shape),
          self.bijector)
      self.lc_statistics = lc.LCStatistics([j.event_shape for j in self.junctions],
                                           dtype=self.dtype)
      self.split_fixed = tf.Variable(config.split in ("static", "random"), trainable=False,
                                     name="split_fixed")
    if config.split == "random":
      lc.random_split(self.junctions, config.seed)

  # --- construction ------------------------------------------------------------------------
  def _next_seed(self):
    self._seed_counter += 1
    return self.config.seed * 100003 + self._seed_counter

  def _coupling(self, shape, mask, parity, name):
    cfg = self.config
    n_in, n_out = lcb.conditioner_channels(shape[-1], mask, cfg.coupling)
    if cfg.architecture == "glow":
      net = networks.glow_network(n_in, n_out, cfg.hidden_channels, dtype=cfg.dtype,
                                  init=cfg.network_init)
    else:
      net = networks.resnet_network(n_in, n_out, cfg.hidden_channels,
                                    num_blocks=cfg.resnet_blocks, dtype=cfg.dtype,
                                    init=cfg.network_init)
    return lcb.AffineCoupling(net, shape, mask=mask, parity=parity, kind=cfg.coupling,
                              scale_fn=cfg.resolved_scale_fn,
                              max_log_scale=cfg.resolved_max_log_scale,
                              max_shift=cfg.resolved_max_shift, dtype=self.dtype, name=name)

  def _glow_steps(self, shape, level):
    steps = []
    for k in range(self.config.steps_per_level):
      prefix = f"level{level}_step{k}"
      steps += [
          lcb.ActNorm(shape[-1], dtype=self.dtype, name=f"{prefix}_actnorm"),
          lcb.InvertibleConv1x1(shape[-1], parametrization=self.config.conv1x1,
                                seed=self._next_seed(), dtype=self.dtype,
                                name=f"{prefix}_conv1x1"),
          self._coupling(shape, "channel", 0, f"{prefix}_coupling"),
      ]
    return steps

  def _realnvp_steps(self, shape, level, mask, count):
    steps = []
    for k in range(count):
      prefix = f"level{level}_{mask}{k}"
      steps += [lcb.ActNorm(shape[-1], dtype=self.dtype, name=f"{prefix}_actnorm"),
                self._coupling(shape, mask, k % 2, f"{prefix}_coupling")]
    return steps

  def _build_level(self, level, shape, junctions):
    """Bijector of levels `level..L-1` on [H, W, C] (shape-preserving)."""
    cfg = self.config
    last = level == cfg.levels - 1
    h, w, c = shape
    squeezed = (h // 2, w // 2, 4 * c)
    if cfg.architecture == "glow":
      parts = [lcb.Squeeze(name=f"level{level}_squeeze")] + self._glow_steps(squeezed, level)
    elif last:
      return tfb.Chain(self._realnvp_steps(shape, level, "checkerboard",
                                           cfg.steps_per_level + 1), name=f"level{level}")
    else:
      parts = (self._realnvp_steps(shape, level, "checkerboard", cfg.steps_per_level)
               + [lcb.Squeeze(name=f"level{level}_squeeze")]
               + self._realnvp_steps(squeezed, level, "channel", cfg.steps_per_level))
    if not last:
      parts.append(self._junction(level, squeezed, junctions))
    parts.append(tfb.Invert(lcb.Squeeze(name=f"level{level}_unsqueeze_inner")))
    # tfb.Chain([b1, ..., bn]).inverse applies b1.inverse first: list in image -> latent order.
    return tfb.Chain(parts, name=f"level{level}")

  def _junction(self, level, shape, junctions):
    start = self.open_junctions_from
    if start is not None and level >= start:  # a nosplit pilot: every element goes on
      junction = lcb.OpenJunction(self._build_level(level + 1, shape, junctions), shape,
                                  dtype=self.dtype, name=f"level{level}_open_junction")
      junctions.append(junction)
      return junction
    h, w, c = shape
    prior = self.config.resolved_split_prior
    net = (networks.prior_network(c // 2, c, dtype=self.config.dtype)
           if prior == "conditional" else None)
    permutation = lcb.ChannelPermutation(shape, dtype=self.dtype, name=f"level{level}_split_perm")
    inner = self._build_level(level + 1, (h, w, c // 2), junctions)
    junction = lcb.FactorOut(inner, shape, prior=prior, prior_network=net,
                             permutation=permutation,
                             max_log_sigma=self.config.resolved_max_log_sigma, dtype=self.dtype,
                             name=f"level{level}_factor_out")
    junctions.append(junction)
    return junction

  # --- variables and state -----------------------------------------------------------------
  @property
  def validate_args(self):
    """Whether input values are checked (see the class docstring)."""
    return self._validate_args

  @property
  def trainable_variables(self):
    """Every trainable variable: the bijectors' own and their Keras networks'."""
    return lcb.collect_trainable_variables(self.bijector)

  @property
  def actnorms(self):
    return [m for m in self.bijector.submodules if isinstance(m, lcb.ActNorm)]

  def astype(self, dtype):
    """A copy of this flow computing in `dtype`, holding the same (cast) state.

    Every variable is copied: weights, ActNorm state, split permutations, the LC statistics and
    whether the split is fixed; the copy shares nothing with this flow. The use is precision:
    a trained flow can contract some elements so strongly that float32 rounding, amplified
    back through decode, moves an encode -> decode round trip by more than half a uint8 bin;
    `flow.astype("float64")` encodes and decodes such images exactly, at float64's cost in
    speed (`export.py --precision=float64` exports such a copy). Densities agree to the
    float32 flow's precision; seeded draws (`sample`, `bits_per_dim`'s noise) do not, since
    the random values are drawn in the copy's dtype.

    Args:
      dtype: "float32" or "float64" (or a `tf.DType` / NumPy dtype).

    Returns:
      A new `Flow` whose `config.dtype` is `dtype` (a copy even when it equals this one's),
      with this flow's `validate_args` and `open_junctions_from`.

    Raises:
      ValueError: for any other dtype.
    """
    name = dtype if isinstance(dtype, str) else tf.as_dtype(dtype).name
    checks.check_choice("dtype", name, ("float32", "float64"), caller="Flow.astype")
    copy = Flow(dataclasses.replace(self.config, dtype=name), validate_args=self.validate_args,
                open_junctions_from=self.open_junctions_from)
    def state(flow):
      return ([*lcb.collect_variables(flow.bijector), *flow.lc_statistics.variables,
               flow.split_fixed])
    for source, target in zip(state(self), state(copy), strict=True):
      target.assign(tf.cast(source, target.dtype))  # floats cast; int and bool state as is
    return copy

  def is_initialized(self):
    return all(bool(a.initialized.numpy()) for a in self.actnorms)

  def initialize(self, images, force=False):
    """Data-dependent ActNorm initialisation from a batch of model inputs (eager).

    Each ActNorm is initialised on the activations that reach it, in order, so the whole
    batch leaves every ActNorm with zero mean and unit variance per channel. Without
    `force`, already initialised layers are kept (a restored model is never re-initialised).

    Raises:
      ValueError: as `log_prob`.
    """
    x = self._check_input(images, "Flow.initialize")
    if force:
      for a in self.actnorms:
        a.initialized.assign(False)
    lcb.inverse_with_log_det_map(self.bijector, x)

  # --- densities ---------------------------------------------------------------------------
  def _check_input(self, x, caller, what="images"):
    """`x` as a tensor of this flow's dtype, after the checks of the class docstring.

    Args:
      x: model-space images (or, with `what="latents"`, latents) [..., H, W, C].
      caller: the public method, named first in every message.
      what: "images" (with `validate_args`: finite, in [0, 1)) or "latents" (finite).

    Returns:
      The float tensor of `self.dtype` (with `validate_args` in a graph, one that depends on
      the assertion).

    Raises:
      ValueError: a dtype that is not floating, a trailing shape other than `image_shape`;
        with `validate_args`, eagerly, a value that breaks the rule.
    """
    x = tf.convert_to_tensor(x)
    dims = ", ".join(map(str, self.image_shape))
    if not x.dtype.is_floating:
      hint = ("; use bits_per_dim() for integer images or lcflow_tf.data.dequantize to "
              "convert them" if what == "images" else "")
      raise ValueError(f"{caller}: expected float {what} of shape [N, {dims}], got dtype "
                       f"{x.dtype.name}{hint}.")
    if x.shape.rank is not None and (x.shape.rank < 3 or
                                     tuple(x.shape[-3:]) != self.image_shape):
      raise ValueError(f"{caller}: expected {what} of shape [..., {dims}], got shape "
                       f"{x.shape.as_list()}.")
    x = tf.cast(x, self.dtype)
    if self.validate_args:
      x = checked_values(x, caller, what)
    return x

  def _maybe_initialize(self, x):
    if tf.executing_eagerly() and not self.is_initialized():
      lcb.inverse_with_log_det_map(self.bijector, x)  # `x` passed `_check_input` already

  def _encode(self, x, caller, recorder=None):
    x = self._check_input(x, caller)
    self._maybe_initialize(x)
    return lcb.inverse_with_log_det_map(self.bijector, x, recorder=recorder)

  def encode_with_log_det_map(self, x, recorder=None):
    """(latent z, per-element inverse log-det map A), both shaped like `x`.

    Raises:
      ValueError: as `log_prob`.
    """
    return self._encode(x, "Flow.encode_with_log_det_map", recorder=recorder)

  def log_prob(self, x):
    """log p(x) in nats per image, for float images in [0, 1) (one pass through the flow).

    Raises:
      ValueError: integer dtype or wrong trailing shape; with `validate_args` (eagerly), a
        NaN, infinite or out-of-range value (in a `tf.function`: `InvalidArgumentError` at
        run time).
    """
    return self._log_prob(x, "Flow.log_prob")

  def _log_prob(self, x, caller):
    z, a = self._encode(x, caller)
    return tf.reduce_sum(lc.standard_normal_log_prob(z) + a, axis=[-3, -2, -1])

  def log_prob_and_lc_batch(self, x):
    """log p(x) and the batch sums of the LC statistics, from the same single pass.

    Used by the training step: `lc_statistics.update` takes the second value.

    Raises:
      ValueError: as `log_prob`.
    """
    recorder = lc.SplitRecorder()
    z, a = self._encode(x, "Flow.log_prob_and_lc_batch", recorder=recorder)
    log_prob = tf.reduce_sum(lc.standard_normal_log_prob(z) + a, axis=[-3, -2, -1])
    return log_prob, recorder.batch_sums()

  def bits_per_dim(self, images, n_bits=None, num_bins=None, seed=None):
    """Bits per dimension of integer images under uniform dequantisation (one noise sample).

    `-(log p(x) - D log(bins)) / (D log 2)` with `x = (k + u) / bins`, `u ~ U[0, 1)`, which
    upper-bounds the discrete model's code length. Give exactly one of `n_bits`
    (bins = 2**n_bits) or `num_bins`.

    Returns:
      bits/dim per image, shape [N].

    Raises:
      ValueError: float images, or (eagerly) values outside [0, bins); inside a
        `tf.function` out-of-range values fail with `InvalidArgumentError` instead.
    """
    bins = _resolve_bins(n_bits, num_bins)
    images = tf.convert_to_tensor(images)
    if images.dtype.is_floating:
      raise ValueError(f"bits_per_dim: expected integer images in [0, {bins}), got dtype "
                       f"{images.dtype.name}; call log_prob for float inputs.")
    message = f"bits_per_dim: image values must be integers in [0, {bins}) (bins={bins})"
    wide = tf.cast(images, tf.int64)
    if tf.executing_eagerly():
      if tf.size(wide) and not 0 <= int(tf.reduce_min(wide)) <= int(tf.reduce_max(wide)) < bins:
        raise ValueError(f"{message}; got values in [{int(tf.reduce_min(wide))}, "
                         f"{int(tf.reduce_max(wide))}].")
    else:
      with tf.control_dependencies([
          tf.debugging.assert_non_negative(wide, message=message),
          tf.debugging.assert_less(wide, tf.constant(bins, tf.int64), message=message)]):
        images = tf.identity(images)
    k = tf.cast(images, self.dtype)
    shape = tf.shape(k)
    u = (tf.random.stateless_uniform(shape, seed=[seed, 0], dtype=self.dtype)
         if seed is not None else tf.random.uniform(shape, dtype=self.dtype))
    # k = bins - 1 with u near 1 can round to 1.0; keep x in [0, 1) as the model expects.
    x = tf.minimum((k + u) / bins, np.nextafter(1.0, 0.0, dtype=self.dtype.as_numpy_dtype))
    return log_prob_to_bits_per_dim(self._log_prob(x, "Flow.bits_per_dim"), self.image_shape,
                                    bins)

  # --- sampling and coding -----------------------------------------------------------------
  def sample(self, n, temperature=1.0, seed=None):
    """`n` images in model space: latents ~ N(0, temperature^2) through `forward`."""
    z = self._latents(n, temperature, seed, "sample")
    if z is None:  # TF's CPU conv2d mishandles an empty batch (wrong channel count).
      return tf.zeros((0,) + self.image_shape, self.dtype)
    return self.decode(z)

  def sample_and_log_prob(self, n, temperature=1.0, seed=None):
    """`sample(n, temperature, seed)` and the model's log p(x) of each sample, in one pass.

    log p(x) = log N(z; 0, I) - log|det d forward / dz| at the latent z the sample came from
    (the density of the model itself, whatever the temperature drew z from), in nats per
    image, from one forward pass in which every network runs once
    (`lcflow_tf.bijectors.forward_with_log_det`; TFP's
    `distribution.experimental_sample_and_log_prob` gives the same values but runs each
    network three times).

    Returns:
      (images [n, H, W, C], log_prob [n]).
    """
    z = self._latents(n, temperature, seed, "sample_and_log_prob")
    if z is None:
      return tf.zeros((0,) + self.image_shape, self.dtype), tf.zeros([0], self.dtype)
    x, fldj = lcb.forward_with_log_det(self.bijector, z)
    return x, tf.reduce_sum(lc.standard_normal_log_prob(z), axis=[-3, -2, -1]) - fldj

  def _latents(self, n, temperature, seed, caller):
    """N(0, temperature^2) latents [n, H, W, C] (stateless with a seed), or None for n = 0."""
    checks.check_int("n", n, 0, caller=caller)
    if not temperature >= 0:
      raise ValueError(f"{caller}: temperature must be >= 0, got {temperature!r}.")
    if n == 0:
      return None
    shape = (n,) + self.image_shape
    z = (tf.random.stateless_normal(shape, seed=[seed, 1], dtype=self.dtype)
         if seed is not None else tf.random.normal(shape, dtype=self.dtype))
    return z * tf.cast(temperature, self.dtype)

  def encode(self, x):
    """Image -> latent (shaped like the image).

    Raises:
      ValueError: as `log_prob`.
    """
    return self._encode(x, "Flow.encode")[0]

  def decode(self, z):
    """Latent -> image.

    Raises:
      ValueError: integer dtype or wrong trailing shape; with `validate_args` (eagerly), a
        NaN or infinite latent (in a `tf.function`: `InvalidArgumentError` at run time).
    """
    return self.bijector.forward(self._check_input(z, "Flow.decode", what="latents"))

  # --- likelihood contributions (lcflow_tf.lc) ---------------------------------------------
  def likelihood_contributions(self, x):
    """Per-element decomposition of log p(x) and the LC maps at every junction of this flow.

    Returns:
      `lcflow_tf.lc.LikelihoodContributions` (one pass through the flow).

    Raises:
      ValueError: as `log_prob`.
    """
    recorder = lc.SplitRecorder()
    z, a = self._encode(x, "Flow.likelihood_contributions", recorder=recorder)
    return lc.likelihood_contributions(recorder, z, a)

  def fix_split(self, rule=None):
    """Fixes every junction's permutation from `lc_statistics` (`lcflow_tf.lc.fix_split`).

    Args:
      rule: one of `lcflow_tf.lc.SPLITS`; default `config.split`.

    Returns:
      The permutations that were set, outermost junction first.
    """
    return lc.fix_split(self.junctions, self.lc_statistics,
                        self.config.split if rule is None else rule, seed=self.config.seed,
                        split_fixed=self.split_fixed)


_RULES = {"images": "images must be finite values in [0, 1) (dequantised intensities)",
          "latents": "latents must be finite values"}


def checked_values(x, caller, what):
  """`x` after the value check of `Flow(validate_args=True)` (see `Flow`; also `FlowModel`'s).

  Eagerly the check runs at once; in a graph it is one `tf.debugging.Assert`, guarded by a
  `tf.cond` so that the counts and range of its message are computed only when it fails.

  Args:
    x: a float tensor.
    caller: the public method, named first in the message.
    what: "images" (finite, in [0, 1)) or "latents" (finite).

  Returns:
    `x`; in a graph, an identity of it that runs after the assertion.

  Raises:
    ValueError: eagerly, if a value breaks the rule: e.g. `Flow.log_prob: images must be
      finite values in [0, 1) (dequantised intensities); got 3 non-finite values (2 NaN,
      1 inf) of 128.` or `...; got values in [-0.2, 5.0].`
  """
  rule = f"{caller}: {_RULES[what]}"
  finite = tf.math.is_finite(x)
  valid = finite & (x >= 0) & (x < 1) if what == "images" else finite
  if tf.executing_eagerly():
    if not bool(tf.reduce_all(valid)):
      raise ValueError(f"{rule}; {_describe_values(x.numpy(), what)}.")
    return x

  def fail():
    count = tf.size(x, out_type=tf.int64)
    nonfinite = count - tf.math.count_nonzero(finite, dtype=tf.int64)
    low = tf.reduce_min(tf.where(finite, x, tf.constant(np.inf, x.dtype)))
    high = tf.reduce_max(tf.where(finite, x, tf.constant(-np.inf, x.dtype)))
    message = tf.strings.format(
        rule + "; got {} non-finite values (NaN or inf) of {}; the finite values are in "
        "[{}, {}].", (nonfinite, count, low, high))
    return tf.debugging.Assert(False, [message])

  check = tf.cond(tf.reduce_all(valid), tf.no_op, fail)
  with tf.control_dependencies([check]):
    return tf.identity(x)


def _describe_values(values, what):
  """What is wrong with the NumPy array `values` (see `checked_values`), for a message."""
  nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
  finite = values[np.isfinite(values)]
  parts = []
  if nan or inf:
    parts.append(f"got {nan + inf} non-finite values ({nan} NaN, {inf} inf) of {values.size}")
  if what == "images" and finite.size and not 0 <= finite.min() <= finite.max() < 1:
    span = f"[{finite.min()!s}, {finite.max()!s}]"  # str: the shortest digits of the dtype
    parts.append(f"got values in {span}" if not parts else f"finite values in {span}")
  return ", and ".join(parts)


def _resolve_bins(n_bits, num_bins):
  if (n_bits is None) == (num_bins is None):
    raise ValueError(f"bits_per_dim: give exactly one of n_bits or num_bins, got n_bits={n_bits!r},"
                     f" num_bins={num_bins!r}.")
  if n_bits is not None:
    checks.check_int("n_bits", n_bits, 1, 16, caller="bits_per_dim")
    return 2 ** n_bits
  checks.check_int("num_bins", num_bins, 2, caller="bits_per_dim", numpy_ok=True)
  return int(num_bins)


def log_prob_to_bits_per_dim(log_prob, image_shape, num_bins):
  """Converts log p(x) of `(k + u) / num_bins` to bits/dim of the integer image."""
  dims = float(np.prod(image_shape))
  return -(log_prob - dims * math.log(num_bins)) / (dims * math.log(2.0))
