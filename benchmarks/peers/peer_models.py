"""The TensorFlow models of the peer benchmark and their training step.

Two Glows at matched architecture (L levels of K steps: ActNorm, LU-parametrised 1x1
convolution, affine coupling with a conv3x3-ReLU-conv1x1-ReLU-zero-conv3x3 conditioner of the
same width; a learned prior conditioned on the kept half at each split):
  * `build_ours`: `lcflow_tf.build_flow(architecture="glow", split="static")` with the
    library's defaults otherwise (its coupling scale, `2 tanh(h)`, and soft bounds; the
    worker's `scale_fn` setting can ask for Glow's `sigmoid(h + 2)`);
  * `build_tfp`: TFP's own `tfb.Glow` with `GlowDefaultNetwork` / `GlowDefaultExitNetwork`
    over `Sample(Normal(0, 1), D)` (a sigmoid scale).
Both see images x = (k + u) / bins in [0, 1) (TFP's Glow needs no other range: its ActNorm
initialises itself from the data).

`make_train_step` trains either with a `peer_protocol.Recipe`, using the library's schedule
(`lcflow_tf.schedules.WarmupDecay`) and weight average (`lcflow_tf.averaging.WeightAverage`)
for both models, so a recipe means the same for ours and TFP's. The PyTorch peer
(normflows) is built in `normflows_worker.py`, with the same formulas from `peer_protocol`.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

import lcflow_tf as lf
from lcflow_tf import averaging
from lcflow_tf import schedules

KINDS = ("ours", "tfp")


@dataclasses.dataclass
class Model:
  """What the worker needs of a model.

  Attributes:
    log_prob: float images [N, H, W, C] -> log p(x) [N] in nats.
    sample: (n, temperature, seed) -> images [n, H, W, C]: latents ~ N(0, T^2) decoded.
    sample_and_log_prob: (n, seed) -> (images, log p of each), temperature 1.
    variables: the trainable variables.
    initialize: first batch -> None: data-dependent ActNorm initialisation (eager).
    encode: images -> latents (the bijector's inverse).
    decode: latents -> images (the bijector's forward).
    bijector: the whole model's bijector (forward: latent -> image).
    description: one line naming the construction.
  """
  log_prob: callable
  sample: callable
  sample_and_log_prob: callable
  variables: tuple
  initialize: callable
  encode: callable
  decode: callable
  bijector: object
  description: str


def build_ours(image_shape, levels, steps_per_level, width, seed, scale_fn=None):
  """Our Glow: `build_flow(architecture="glow", split="static")`, library defaults otherwise
  (`scale_fn`: the couplings' scale function; None: the library's default)."""
  kwargs = {} if scale_fn is None else {"scale_fn": scale_fn}
  flow = lf.build_flow(image_shape, architecture="glow", levels=levels,
                       steps_per_level=steps_per_level, hidden_channels=width,
                       split="static", seed=seed, **kwargs)
  return Model(
      log_prob=flow.log_prob,
      sample=lambda n, temperature, seed: flow.sample(n, temperature=temperature, seed=seed),
      sample_and_log_prob=lambda n, seed: flow.sample_and_log_prob(n, seed=seed),
      variables=flow.trainable_variables, initialize=flow.initialize, encode=flow.encode,
      decode=flow.decode, bijector=flow.bijector,
      description=(f"lcflow_tf.build_flow(architecture='glow', split='static') "
                   f"(scale_fn={flow.config.resolved_scale_fn!r})"))


def build_tfp(image_shape, levels, steps_per_level, width, seed):
  """TFP's `tfb.Glow` with its default coupling and exit networks of the same width."""
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  tfb, tfd = tfp.bijectors, tfp.distributions
  glow = tfb.Glow(output_shape=image_shape, num_glow_blocks=levels,
                  num_steps_per_block=steps_per_level,
                  coupling_bijector_fn=lambda s: tfb.GlowDefaultNetwork(s, num_hidden=width),
                  exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=seed)
  # tfb.Glow maps a vector of H*W*C (its latent) to the image.
  latent_shape = glow.inverse_event_shape(image_shape).as_list()
  base = tfd.Sample(tfd.Normal(0.0, 1.0), latent_shape)
  dist = tfd.TransformedDistribution(base, glow)

  def sample(n, temperature, seed):
    return glow.forward(temperature * base.sample(n, seed=(seed, 1)))

  def initialize(x):  # its ActNorms initialise themselves on the first batch they see
    dist.log_prob(x)

  return Model(
      log_prob=dist.log_prob, sample=sample,
      sample_and_log_prob=lambda n, seed: dist.experimental_sample_and_log_prob(
          n, seed=(seed, 1)),
      variables=tuple(glow.trainable_variables), initialize=initialize, encode=glow.inverse,
      decode=glow.forward, bijector=glow,
      description=(f"tfb.Glow(num_glow_blocks={levels}, num_steps_per_block={steps_per_level}, "
                   f"GlowDefaultNetwork(num_hidden={width}), GlowDefaultExitNetwork) over "
                   "Sample(Normal(0, 1), D)"))


def build(kind, image_shape, levels, steps_per_level, width, seed, scale_fn=None):
  """`build_ours` (with `scale_fn`) or `build_tfp` (`kind` in `KINDS`), after seeding Keras'
  initialisers.

  Raises:
    ValueError: for an unknown kind.
  """
  if kind not in KINDS:
    raise ValueError(f"build: kind must be one of {KINDS}, got {kind!r}.")
  keras.utils.set_random_seed(seed)
  if kind == "ours":
    return build_ours(tuple(image_shape), levels, steps_per_level, width, seed, scale_fn)
  return build_tfp(tuple(image_shape), levels, steps_per_level, width, seed)


def num_parameters(variables):
  return int(sum(np.prod(v.shape) for v in variables))


class Trainer:
  """One model's optimizer, weight average and compiled training step under a recipe.

  Args:
    model: a `Model`.
    recipe: a `peer_protocol.Recipe` (Adam without weight decay or step skipping: the
      TensorFlow models train with the library's optimizer set-up).
    steps: training steps of the run (where a decaying learning rate reaches its floor).
    jit: XLA-compile the step.

  Raises:
    ValueError: for a recipe these models cannot train with.
  """

  def __init__(self, model, recipe, steps, jit=False):
    if recipe.optimizer != "adam" or recipe.weight_decay or recipe.skip_nonfinite:
      raise ValueError("Trainer: the TensorFlow models train with Adam, no weight decay and no "
                       f"step skipping; got {recipe}.")
    self.model = model
    self.recipe = recipe
    self.schedule = schedules.WarmupDecay(
        recipe.learning_rate, recipe.lr_warmup, kind=recipe.lr_schedule,
        decay_steps=steps if recipe.lr_schedule != "constant" else None,
        min_ratio=recipe.lr_min_ratio)
    self.optimizer = keras.optimizers.Adam(self.schedule)
    self.average = None
    self.step = tf.function(self._step, jit_compile=jit)

  def start(self, first_batch):
    """Data-dependent initialisation on the first batch, then the weight average (if any)."""
    self.model.initialize(first_batch)
    if self.recipe.ema_decay > 0:
      self.average = averaging.WeightAverage(self.model.variables, self.recipe.ema_decay)

  def learning_rate(self):
    """The learning rate of the next update (a float)."""
    return float(self.schedule(self.optimizer.iterations))

  def _step(self, x):
    """One update; returns (loss, gradient norm before clipping)."""
    variables = self.model.variables
    with tf.GradientTape() as tape:
      with tf.name_scope("loss"):
        loss = -tf.reduce_mean(self.model.log_prob(x))
    grads = tape.gradient(loss, variables)
    missing = [v.name for v, g in zip(variables, grads) if g is None]
    if missing:
      raise ValueError(f"no gradient reaches {missing}")
    with tf.name_scope("clipping"):
      norm = tf.linalg.global_norm(grads)
      if self.recipe.grad_clip_norm is not None:
        grads, _ = tf.clip_by_global_norm(grads, self.recipe.grad_clip_norm, use_norm=norm)
    with tf.name_scope("optimizer"):
      self.optimizer.apply_gradients(zip(grads, variables))
    if self.average is not None:
      with tf.name_scope("weight_average"):
        self.average.update()
    return loss, norm
