"""`FlowModel`: a flow as a `keras.Model` (fit, evaluate, predict, callbacks, save, export).

A `FlowModel` holds a `Flow` and trains it with Keras' own loop: `compile(optimizer=...)`
then `fit(...)` minimises -log p(x) of dequantised images with the same step as the library's
`training.Trainer` (`lcflow_tf.steps.StepEngine`: one all-reduce per step, the gradient
clipped by its global norm when asked for, a non-finite step skipped). Keras sees every
variable of the flow: `trainable_weights` are the flow's trainable variables (Keras networks
and the bijectors' own), `non_trainable_weights` its state (ActNorm `initialized` flags, the
1x1 convolutions' fixed LU parts, split permutations, LC statistics, `split_fixed`), so
`save_weights`/`load_weights`, `save`/`keras.models.load_model` (`.keras`, registered as
`lcflow_tf>FlowModel`), `ModelCheckpoint` and `BackupAndRestore` keep the whole model.

Inputs (`x` of fit / evaluate / predict, a batch or a `tf.data.Dataset` of batches; labels,
if any, are ignored):
  * integer images (e.g. uint8) with values in [0, num_bins): dequantised inside,
    `x = (k + u) / num_bins`. `fit` draws `u` statelessly from (`seed`, the optimizer's step)
    for the global batch and gives each replica its slice, so any number of replicas sees the
    noise of one device; `evaluate` draws it from (`seed`, the batch's fingerprint), so two
    evaluations of the same data agree; `predict` and `call` use the bin centres, u = 0.5
    (as the SavedModel's `log_prob` signature).
  * float images: already dequantised model inputs in [0, 1), used as they are (e.g. the
    batches of `data.make_train_pipeline`, which the `Trainer` trains on).
With `validate_args` (default True) integer values outside [0, num_bins), and float values
that are not finite or outside [0, 1), stop the step with an error naming the problem (the
checks run outside the XLA-compiled part of `jit=True`).

Metrics: `loss` (mean -log p(x), nats per image) and `bits_per_dim`
(`-(log p(x) - D log num_bins) / (D log 2)`); `evaluate` returns both (`return_dict=True`:
`{"loss": ..., "bits_per_dim": ...}`), `predict` the log-densities [N] in nats.

ActNorm's data-dependent initialisation runs eagerly on the first batch of `x` when `fit`
starts (or call `initialize(batch)`); `evaluate` and `predict` refuse an uninitialised model.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from lcflow_tf import checks
from lcflow_tf import compat
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import export
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import pilots
from lcflow_tf import steps
from lcflow_tf.bijectors import base


@keras.saving.register_keras_serializable(package="lcflow_tf")
class FlowModel(keras.Model):
  """A multi-scale flow as a Keras model (see the module docstring).

  Args:
    flow: a `FlowConfig` with `image_shape` set (the flow is built here, inside the current
      distribution strategy's scope if any), or an existing `Flow` to wrap.
    num_bins: integer levels of the images (256 for 8-bit images, 17 for digits).
    split_orders: channel orders [H_l, W_l, C_l] for the first junctions, outermost first
      (e.g. from `nosplit` pilots, see `pilot`); giving one per junction fixes the split.
    open_junctions_from: with a `FlowConfig`: None, or the junction from which the flow factors
      nothing out (a `nosplit` pilot's model, see `pilot` and `flows.Flow`).
    seed: seed of the dequantisation noise.
    grad_clip_norm: clip the gradient of the mean loss to this global norm (None: no clip).
    validate_args: check the input values inside the steps (integers in [0, num_bins),
      floats finite and in [0, 1)).
    jit: XLA-compile the loss-and-gradient part of the training step.
    **kwargs: `keras.Model` arguments (e.g. `name`).

  Raises:
    ValueError: for a bad argument (the message names it).
  """

  def __init__(self, flow, num_bins, split_orders=(), seed=0, grad_clip_norm=None,
               validate_args=True, jit=False, open_junctions_from=None, **kwargs):
    super().__init__(**kwargs)
    checks.check_int("num_bins", num_bins, 2, caller="FlowModel", numpy_ok=True)
    checks.check_int("seed", seed, 0, caller="FlowModel")
    checks.check_bool("validate_args", validate_args, caller="FlowModel")
    checks.check_bool("jit", jit, caller="FlowModel")
    if grad_clip_norm is not None:
      checks.check_number("grad_clip_norm", grad_clip_norm, 0.0, caller="FlowModel")
    if isinstance(flow, flows.FlowConfig):
      flow = flows.Flow(flow, open_junctions_from=open_junctions_from)
    elif not isinstance(flow, flows.Flow):
      raise TypeError(f"FlowModel: flow must be a FlowConfig or a Flow, got "
                      f"{type(flow).__name__}.")
    elif open_junctions_from not in (None, flow.open_junctions_from):
      raise ValueError(f"FlowModel: open_junctions_from={open_junctions_from!r} differs from the "
                       f"given Flow's own ({flow.open_junctions_from!r}); give it with a "
                       "FlowConfig.")
    self.flow = flow
    self.num_bins = int(num_bins)
    self.seed = seed
    self.grad_clip_norm = grad_clip_norm
    self.validate_args = validate_args
    self.jit = jit
    if len(split_orders):
      lc.set_split(flow.junctions, [np.asarray(o) for o in split_orders],
                   flow.split_fixed if len(split_orders) == len(flow.junctions) else None)
    # Keras tracks the conditioner networks as layers; the flow's other variables it learns
    # from `weights` / `variables` and saves through `save_own_variables`.
    self.networks = [n for m in flow.bijector.submodules for n in getattr(m, "networks", ())]
    self._flow_state = _FlowState(flow)
    self.nll_metric = keras.metrics.Mean(name="loss")
    self.bits_metric = keras.metrics.Mean(name="bits_per_dim")
    self.supports_jit = False  # ActNorm's initialisation and the input checks are not XLA ops
    self.built = True

  # --- what Keras sees ---------------------------------------------------------------------
  @property
  def weights(self):
    """Every variable of the flow (trainable first in `trainable_weights`' order)."""
    return list(self._flow_state.variables)

  @property
  def variables(self):
    return list(self._flow_state.variables)

  @property
  def metrics(self):
    return [self.nll_metric, self.bits_metric]

  def save_own_variables(self, store):
    """Saves the flow's variables that are not Keras networks' (those save as layers)."""
    for i, variable in enumerate(self._flow_state.own):
      store[str(i)] = np.asarray(variable.numpy())

  def load_own_variables(self, store):
    """Restores what `save_own_variables` saved (same configuration).

    Raises:
      ValueError: when the store holds another number of variables or other shapes.
    """
    if len(store.keys()) != len(self._flow_state.own):
      raise ValueError(f"FlowModel: the weights hold {len(store.keys())} flow variables, this "
                       f"model has {len(self._flow_state.own)}; they were saved from another "
                       "configuration.")
    for i, variable in enumerate(self._flow_state.own):
      value = np.asarray(store[str(i)])
      if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"FlowModel: saved variable {i} has shape {list(value.shape)}, "
                         f"{variable.name} of this model {list(variable.shape)}.")
      variable.assign(value)

  def get_config(self):
    config = dataclasses.asdict(self.flow.config)
    config["image_shape"] = list(config["image_shape"])
    fixed = (bool(self.flow.split_fixed.numpy())
             and self.flow.config.split in lc.DATA_DEPENDENT_SPLITS)
    return {"name": self.name, "trainable": self.trainable, "flow": config,
            "num_bins": self.num_bins, "seed": self.seed, "grad_clip_norm": self.grad_clip_norm,
            "validate_args": self.validate_args, "jit": self.jit,
            "open_junctions_from": self.flow.open_junctions_from,
            "split_orders": ([j.permutation.indices.numpy().tolist() for j in self.flow.junctions]
                             if fixed else [])}

  @classmethod
  def from_config(cls, config):
    config = dict(compat.flow_model_config(config))
    values = dict(config.pop("flow"))
    values["image_shape"] = tuple(values["image_shape"])
    return cls(flows.FlowConfig(**values), **config)

  # --- inputs ------------------------------------------------------------------------------
  def _model_inputs(self, images, noise):
    """Model inputs in [0, 1) from a batch: floats as they are, integers dequantised.

    `noise`: "train" (seeded by the optimizer's step, global-batch slices), "eval" (seeded by
    the batch's fingerprint) or "centre" (u = 0.5).
    """
    images = tf.convert_to_tensor(images)
    if images.dtype.is_floating:
      x = tf.cast(images, self.flow.dtype)
      return flows.checked_values(x, "FlowModel", "images") if self.validate_args else x
    if not images.dtype.is_integer:
      raise ValueError(f"FlowModel: images must be integers in [0, {self.num_bins}) or "
                       f"floats in [0, 1), got dtype {images.dtype.name}.")
    if self.validate_args:
      images = self._check_range(images)
    if noise == "centre":
      return tf.cast((tf.cast(images, tf.float64) + 0.5) / self.num_bins, self.flow.dtype)
    if noise == "eval":
      fingerprint = tf.bitcast(tf.fingerprint(tf.reshape(images, [1, -1]))[0], tf.int64)
      seed = tf.stack([fingerprint, tf.constant(self.seed, tf.int64)])
      u = tf.random.stateless_uniform(tf.shape(images), seed, dtype=tf.float64)
    else:
      u = self._train_noise(images)
    return tf.cast(data.dequantize_with_noise(images, u, self.num_bins), self.flow.dtype)

  def _train_noise(self, images):
    """This replica's slice of the global batch's noise, seeded by (seed, optimizer step)."""
    replicas, replica = 1, 0  # cross-replica (initialize): the global batch itself
    if not tf.distribute.in_cross_replica_context():
      replicas = tf.distribute.get_strategy().num_replicas_in_sync
      replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    optimizer = getattr(self, "optimizer", None)
    step = optimizer.iterations if optimizer is not None else 0
    seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
    shape = tf.shape(images)
    size = shape[0]
    everything = tf.concat([[size * replicas], shape[1:]], 0)
    u = tf.random.stateless_uniform(everything, seed, dtype=tf.float64)
    start = tf.cast(replica, tf.int32) * size
    return u[start:start + size]

  def _check_range(self, images):
    message = (f"FlowModel: integer images must have values in [0, {self.num_bins}) "
               f"(num_bins={self.num_bins})")
    wide = tf.cast(images, tf.int64)
    with tf.control_dependencies([
        tf.debugging.assert_non_negative(wide, message=message),
        tf.debugging.assert_less(wide, tf.constant(self.num_bins, tf.int64), message=message)]):
      return tf.identity(images)

  def _bits_per_dim(self, log_prob):
    return flows.log_prob_to_bits_per_dim(log_prob, self.flow.image_shape, self.num_bins)

  # --- Keras' steps ------------------------------------------------------------------------
  def call(self, inputs, training=False):
    """log p(x) in nats per image (integer images at their bin centres)."""
    del training
    return self.flow.log_prob(self._model_inputs(inputs, "centre"))

  def train_step(self, batch):
    x = self._model_inputs(keras.utils.unpack_x_y_sample_weight(batch)[0], "train")
    engine = self._engine()
    loss, grads, _, finite, sums = engine.replica_step(x, collect=True)

    def cross_replica(strategy, grads, finite, sums):
      del strategy
      finite, sums = steps.first_replica((finite, sums))
      engine.apply(grads, finite, sums, collect=self._collects_statistics())

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite, sums))
    self.nll_metric.update_state(loss)
    self.bits_metric.update_state(self._bits_per_dim(-loss))
    return self._logs()

  def test_step(self, batch):
    x = self._model_inputs(keras.utils.unpack_x_y_sample_weight(batch)[0], "eval")
    log_prob = self.flow.log_prob(x)
    self.nll_metric.update_state(-log_prob)
    self.bits_metric.update_state(self._bits_per_dim(log_prob))
    return self._logs()

  def _logs(self):
    """The metrics' results. Under `MultiWorkerMirroredStrategy` each has shape [1]: Keras
    averages the workers' logs along axis 0, which fails for scalars (the results are the
    same on every replica, so the average is the result)."""
    logs = {m.name: m.result() for m in self.metrics}
    if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
      logs = {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs

  def predict_step(self, batch):
    return self(keras.utils.unpack_x_y_sample_weight(batch)[0])

  def _engine(self):
    if getattr(self, "optimizer", None) is None:
      raise ValueError("FlowModel: call compile(optimizer=...) before fit.")
    return steps.StepEngine(self.flow, self.optimizer, self.trainable_weights,
                            grad_clip_norm=self.grad_clip_norm, jit=self.jit)

  def _collects_statistics(self):
    """While a data-dependent split is open; always for a split fixed from the start."""
    if self.flow.config.split not in lc.DATA_DEPENDENT_SPLITS:
      return True
    return tf.logical_not(tf.convert_to_tensor(self.flow.split_fixed))

  def compile(self, optimizer="adam", **kwargs):
    """Keras' `compile` (no loss: the loss is -log p(x)); builds the optimizer on the flow's
    variables at once, so `load_weights` restores its state too.

    Raises:
      ValueError: when a `loss` is given.
    """
    if kwargs.get("loss") is not None:
      raise ValueError(f"FlowModel.compile: the loss is -log p(x); got loss={kwargs['loss']!r}.")
    super().compile(optimizer=optimizer, **kwargs)
    with self.distribute_strategy.scope():
      if not self.optimizer.built:
        self.optimizer.build(self.trainable_variables)

  def compile_from_config(self, config):
    """Compiles as `compile` did before saving (`keras.models.load_model` calls it)."""
    self.compile(**keras.saving.deserialize_keras_object(config))

  # --- fit / evaluate / predict ------------------------------------------------------------
  def fit(self, x=None, y=None, batch_size=None, **kwargs):
    """Keras' `fit`; first initialises the ActNorms on the first batch of `x` if needed.

    A `tf.data.Dataset` is used in its own order (`shuffle` defaults to False for it, as
    Keras ignores it there anyway).
    """
    if not self.flow.is_initialized():
      self.initialize(_first_batch(x, batch_size))
    if not isinstance(x, (np.ndarray, tf.Tensor)):
      kwargs.setdefault("shuffle", False)
    return super().fit(x, y, batch_size=batch_size, **kwargs)

  def evaluate(self, *args, **kwargs):
    """Keras' `evaluate`: returns `loss` (nats per image) and `bits_per_dim`."""
    self._check_initialized("evaluate")
    return super().evaluate(*args, **kwargs)

  def predict(self, *args, **kwargs):
    """Keras' `predict`: log p(x) per image in nats (integer images at their bin centres)."""
    self._check_initialized("predict")
    return super().predict(*args, **kwargs)

  def _check_initialized(self, caller):
    if not self.flow.is_initialized():
      raise ValueError(f"FlowModel.{caller}: the model is not initialised (its ActNorms have "
                       "seen no data); fit it, load weights, or call initialize(batch) first.")

  def initialize(self, images, force=False):
    """Data-dependent ActNorm initialisation from a batch (integer or float images).

    Integer images get the noise of the first training step. Without `force`, a model
    initialised before (trained or loaded) is left as it is.
    """
    with self.distribute_strategy.scope():
      self.flow.initialize(self._model_inputs(images, "train"), force=force)

  # --- the flow's other uses ---------------------------------------------------------------
  def sample(self, n, temperature=1.0, seed=None):
    """`n` samples in model space [n, H, W, C] (`Flow.sample`; `floor(x * num_bins)`, clipped
    to [0, num_bins), gives the integer image)."""
    return self.flow.sample(n, temperature=temperature, seed=seed)

  def fix_split(self, rule=None):
    """Fixes every junction's split from the LC statistics (`Flow.fix_split`)."""
    with self.distribute_strategy.scope():
      return self.flow.fix_split(rule)

  def split_order(self, junction, rule=None):
    """The channel order that `rule` (default: the flow's split) gives `junction` now."""
    rule = rule or self.flow.config.split
    return lc.split_order(self.flow.lc_statistics, junction, rule)

  @classmethod
  def pilot(cls, config, junction, num_bins, split_orders=(), **kwargs):
    """The pilot model of `junction` of the `nosplit` protocol (`lcflow_tf.pilots`).

    Its flow is `pilots.pilot_model(config)` (the static split) with the orders of the
    decided junctions (`split_orders`, outermost first) and no factor-out at `junction` and
    below (`open_junctions_from=junction`), so no split has shaped its statistics there;
    after training it, `split_order(junction, rule)` gives that junction's order under the
    data-dependent `rule`.
    """
    return cls(pilots.pilot_model(config), num_bins, split_orders=split_orders,
               open_junctions_from=junction, **kwargs)

  def export(self, filepath, format="tf_saved_model",  # pylint: disable=redefined-builtin
             verbose=None, overwrite=False, version=None, **kwargs):
    """Writes the flow's SavedModel with the serving signatures of `lcflow_tf.export`.

    Args:
      filepath: the export directory (with `version`: TensorFlow Serving's model base path).
      format: "tf_saved_model" (the only one).
      verbose: unused (Keras' argument).
      overwrite: replace an existing export.
      version: None, or an int >= 1 (TensorFlow Serving's version folder).

    Returns:
      The SavedModel directory written.

    Raises:
      ValueError: for another format or extra arguments, an uninitialised model, or a
        destination `export.export_saved_model` refuses.
    """
    del verbose
    if format != "tf_saved_model" or kwargs:
      raise ValueError(f"FlowModel.export: only format='tf_saved_model' without further "
                       f"arguments is supported, got format={format!r}, {sorted(kwargs)}.")
    self._check_initialized("export")
    return export.export_saved_model(self.flow, filepath, self.num_bins, overwrite=overwrite,
                                     version=version)


class _FlowState:
  """The flow's variables, kept where neither Keras' nor TensorFlow's tracking looks.

  Attributes:
    variables: every variable of the flow, once: the bijectors' and networks'
      (`bijectors.collect_variables`), the LC statistics and `split_fixed`.
    own: those that are not Keras variables (the networks' are saved with their layers).
  """

  def __init__(self, flow):
    found = (list(base.collect_variables(flow.bijector)) + list(flow.lc_statistics.variables)
             + [flow.split_fixed])
    self.variables = tuple({id(v): v for v in found}.values())
    self.own = tuple(v for v in self.variables if not isinstance(v, keras.Variable))


def _first_batch(x, batch_size):
  """The first batch of `fit`'s `x` (a dataset, array or Keras `PyDataset`), without labels."""
  if isinstance(x, tf.data.Dataset):
    first = next(iter(x), None)
  elif isinstance(x, keras.utils.PyDataset):
    first = x[0] if len(x) else None
  elif isinstance(x, (np.ndarray, tf.Tensor)):
    first = x[:batch_size or 32]
  else:  # e.g. a distributed dataset: each worker holds only its slice of a batch
    raise ValueError(f"FlowModel.fit: cannot take the first batch of a {type(x).__name__} to "
                     "initialise the ActNorms; call model.initialize(global_batch) before fit.")
  if first is None or not len(keras.utils.unpack_x_y_sample_weight(first)[0]):
    raise ValueError("FlowModel.fit: x holds no images.")
  return keras.utils.unpack_x_y_sample_weight(first)[0]


def train_stream(dataset, batch_size, seed=0, strategy=None, shuffle_buffer=10000,
                 start_step=0):
  """The `Trainer`'s training stream for `FlowModel.fit`: dequantised global batches.

  Global step s gets exactly batch s of `data.make_train_pipeline` (shuffled epochs, noise
  seeded per image), whatever the number of replicas and workers: with `strategy` (e.g. a
  `MultiWorkerMirroredStrategy`) the stream is distributed as the `Trainer` distributes it
  (`distribute.dataset_fn`), where Keras' own sharding of a dataset would give each worker
  other images. Infinite: give `fit` its `steps_per_epoch`.

  Args:
    dataset: an `data.ImageDataset`.
    batch_size: the global batch size.
    seed: seed of the order and the dequantisation noise.
    strategy: None (a `tf.data.Dataset`), or the strategy to distribute it for.
    shuffle_buffer: shuffle buffer (images).
    start_step: the first global step (to resume a stream).

  Returns:
    A `tf.data.Dataset` of float32 [batch_size, H, W, C], or the distributed dataset.
  """
  def make_stream(size, start):
    return data.make_train_pipeline(dataset.train(), size, dataset.num_bins, seed,
                                    shuffle_buffer=shuffle_buffer, start_step=start,
                                    dataset_size=dataset.num_train)

  if strategy is None:
    return make_stream(batch_size, start_step)
  return strategy.distribute_datasets_from_function(
      distribute.dataset_fn(make_stream, batch_size, start_step))
