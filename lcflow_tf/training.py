"""Distributed maximum-likelihood training of a flow: the `Trainer`.

`train(config, model_dir)` (or `Trainer(...).train()`) runs one `TrainConfig` whose split is
fixed from the start; `lcflow_tf.pilots` runs those whose split its pilots fix. What the loop
uses has its own module: the strategy and the per-replica input (`lcflow_tf.distribute`), the
checkpoints and their crash-safe rules (`lcflow_tf.checkpoints`), the progress log and
TensorBoard summaries (`lcflow_tf.summaries`), the learning-rate schedule
(`lcflow_tf.schedules`), the weight averages (`lcflow_tf.averaging`) and the loop that runs the
steps (`lcflow_tf.loop`). Every variable
(flow, optimizer, step, learning-rate scale, weight averages) is created inside
`strategy.scope()`.

* Input: `strategy.distribute_datasets_from_function` over `data.make_train_pipeline` with
  per-replica batches of `batch_size / num_replicas`; each input pipeline skips the batches
  of the steps already taken, so a resumed run sees the batches it would have seen. Global
  step s consumes exactly the images (and dequantisation noise) of global batch s of the
  single-device stream, so 1 and N replicas, on one worker or on several, train on the same
  data (see `distribute.dataset_fn`).
* Step (`lcflow_tf.steps.StepEngine`, shared with `FlowModel`): loss and gradients of the
  global batch's mean -log p(x), summed over the replicas, clipped by their global norm; a
  step whose loss or norm is not finite is skipped (`tf.cond`) and counted.
* Learning rate (`schedules.WarmupDecay`): warm-up over `warmup_steps`, then `lr_schedule`
  driven by the global step (a decay reaches its floor at `train_steps`, stretched when a
  resume extends it), times the learning-rate scale (lowered on non-finite recovery).
* Weight averages (`ema_decay` > 0; `averaging.WeightAverage`) of every trainable variable,
  updated right after each applied update and starting from the initialised weights; the
  sample grids (`averaged_weights`) and `evaluation.load_run` (eval.py, export.py) use them.
* Likelihood contributions: the same pass gives the LC batch sums, folded into
  `flow.lc_statistics` whenever `collects_statistics`.
* Splits fixed by pilots (`config.uses_pilot`: a data-dependent split, or the budget-matched
  control): the run's split starts open (`flow.split_fixed` False) and `lcflow_tf.pilots`
  trains the run (`pilots.train`), running the loop in segments (`loop.TrainingLoop`) and fixing
  the split between them; `Trainer.train` refuses to train an open split.
* ActNorm: initialised eagerly, in cross-replica context, from the global first batch before
  the first step, so any number of replicas starts from the same state as one device.
* Checkpoints (`checkpoints.TrainingCheckpoints`): every `checkpoint_every` steps and at the
  end; a run resumes from the latest one ("Resuming from step N"). The newest checkpoint is
  never saved over (`checkpoints.saved_step`).
* Non-finite steps: no periodic checkpoint is written during a streak of them; after
  `max_nonfinite_steps` consecutive ones, the latest checkpoint is restored (weights,
  optimizer and averages) and the learning rate is multiplied by `nonfinite_lr_factor`
  (kept in later checkpoints); after `max_nonfinite_restores` such restores training stops
  with `TrainingError`.
* Logs (`summaries`): a progress line and TensorBoard scalars every `log_every` steps, in
  `model_dir/train`; every `images_every` steps and at the end, sample grids and LC heatmaps.
"""

import contextlib
import os

import keras
import tensorflow as tf
from absl import logging

from lcflow_tf import averaging
from lcflow_tf import checkpoints
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import loop as loop_lib
from lcflow_tf import schedules
from lcflow_tf import steps
from lcflow_tf import summaries

MIXED_PRECISION_POLICY = "mixed_bfloat16"
TrainingError = loop_lib.TrainingError  # the loop's, and `recover_from_nonfinite`'s
TrainResult = loop_lib.TrainResult


def seed_initializers(seed):
  """Seeds Keras's weight initialisers (and Python's and NumPy's RNGs) with `seed`.

  TensorFlow's global seed is left unset: `tf.data` mixes it into the shuffling seeds, and
  the training stream must depend on `config.stream_seed` only (so a resumed run, or any
  process, sees the same batches).
  """
  keras.utils.set_random_seed(seed)
  tf.random.set_seed(None)


def apply_mixed_precision(flow, policy=MIXED_PRECISION_POLICY):
  """Runs the coupling networks of `flow` under a Keras mixed-precision policy.

  The networks compute in bfloat16 (float32 variables); their outputs are cast back to the
  flow's dtype by the couplings, so log-densities, log-dets and the optimizer stay float32.
  bfloat16 has float32's exponent range, so no loss scaling is needed.

  Returns:
    The number of Keras layers switched to `policy`.
  """
  count = 0
  for module in flow.bijector.submodules:
    network = getattr(module, "conditioner", None)
    if isinstance(network, keras.Model):
      for layer in network.layers:
        layer.dtype_policy = policy
        count += 1
  return count


class Trainer:
  """Trains one `TrainConfig` in `model_dir` (see the module docstring).

  Construction validates everything that can be checked before training (model_dir config,
  batch divisibility, image-size divisibility, hardware, a writable model_dir) and raises
  `ValueError` with a one-line message before writing anything; then it builds the flow and
  optimizer inside `strategy.scope()`, restores the latest checkpoint (`ValueError` when it
  is unreadable or does not match) or initialises the ActNorms from the first global batch,
  and only then writes `config.json` (chief only).

  Args:
    config: the `TrainConfig`.
    model_dir: directory of checkpoints, `config.json` and summaries.
    strategy: a `tf.distribute.Strategy` (default: `distribute.make_strategy` of the config).
    dataset: an `lcflow_tf.data.ImageDataset` (default: `config.load_dataset()`).
    split_orders: channel orders set on the first junctions before the flow is initialised
      (e.g. a `nosplit` pilot of junction j gets the orders of junctions < j); a restored
      checkpoint holds the same ones.

  Attributes:
    flow: the `flows.Flow` being trained.
    optimizer: its Keras optimizer (Adam with the config's learning-rate schedule).
    strategy: the `tf.distribute.Strategy` (the argument or the config's default).
    dataset: the `lcflow_tf.data.ImageDataset` (the argument or the config's default).
    model_dir: `model_dir` as an absolute path.
    config: the `TrainConfig`.
    flow_config: the `FlowConfig` of `flow` (the config's model with the data's image shape).
    checkpoints: the run's `checkpoints.TrainingCheckpoints`.
    averages: the `averaging.WeightAverage` of `flow.trainable_variables`, or None when
      `config.ema_decay` is 0.
    summary_writer: the TensorBoard writer of `model_dir/train` (a no-op writer off the chief).
  """

  def __init__(self, config, model_dir, strategy=None, dataset=None, split_orders=()):
    if not isinstance(config, config_lib.TrainConfig):
      raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if not model_dir:
      raise ValueError("model_dir must be a non-empty path.")
    self.config = config
    self.model_dir = os.path.abspath(model_dir)
    saved = config_lib.check_resumable(self.model_dir, config)
    self.strategy = strategy or distribute.make_strategy(config.strategy, config.cpu_replicas)
    self._check_hardware()
    self.dataset = dataset or config.load_dataset()
    self.flow_config = config.flow_config(self.dataset.image_shape)
    self._check_dataset()
    self.num_bins = self.dataset.num_bins
    self.is_chief = distribute.is_chief(self.strategy)
    if self.is_chief:  # the other workers never write into model_dir
      files.check_creatable_dir(self.model_dir, "model_dir")
    # Everything is valid: from here on, files are written.
    with self.strategy.scope():
      self._build()
      lc.set_split(self.flow.junctions, list(split_orders))
      if config.uses_pilot:  # open until the pilots fix it (also the control's static split)
        self.flow.split_fixed.assign(False)
      latest = self.checkpoints.restore_latest()
      if latest:
        logging.info("Resuming from step %d (%s)", self.step, latest)
      else:
        self.flow.initialize(self.global_batch(0))
        if self.averages is not None:
          self.averages.reset()  # from the initialised weights
    if self.is_chief:  # after the restore: an unreadable checkpoint changes nothing here
      self._write_config(saved)
    self.summary_writer = (
        tf.summary.create_file_writer(os.path.join(self.model_dir, "train")) if self.is_chief
        else tf.summary.create_noop_writer())
    self._step_fns = {}

  # --- set-up --------------------------------------------------------------------------------
  def _check_hardware(self):
    c, replicas = self.config, self.strategy.num_replicas_in_sync
    if c.batch_size % replicas:
      raise ValueError(f"batch_size={c.batch_size} is not divisible by the "
                       f"{replicas} replicas of the {type(self.strategy).__name__}; use a "
                       "multiple of the replica count.")
    if c.mixed_precision and not tf.config.list_logical_devices("GPU"):
      raise ValueError("mixed_precision needs a GPU (bfloat16 matmuls only pay off there); no "
                       "GPU is visible. Run without --mixed_precision.")

  def _check_dataset(self):
    c, num_train = self.config, self.dataset.num_train
    if num_train == 0:
      raise ValueError(f"the training set of {c.dataset} is empty (0 images).")
    if num_train is not None and c.batch_size > num_train:
      raise ValueError(f"batch_size={c.batch_size} is larger than the training set of "
                       f"{c.dataset} ({num_train} images).")

  def _build(self):
    """The flow, step, learning-rate scale, optimizer, averages and checkpoints (in scope)."""
    c = self.config
    seed_initializers(c.seed)
    self.flow = flows.Flow(self.flow_config, open_junctions_from=c.open_junctions_from)
    if c.mixed_precision:
      apply_mixed_precision(self.flow)
    self._variables = self.flow.trainable_variables
    self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    self._lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
    self.optimizer = keras.optimizers.Adam(schedules.WarmupDecay(
        c.learning_rate, c.warmup_steps, kind=c.lr_schedule, decay_steps=c.train_steps,
        min_ratio=c.lr_min_ratio, scale=self._lr_scale, progress=self._step))
    self.optimizer.build(self._variables)
    self.averages = (averaging.WeightAverage(self._variables, c.ema_decay)
                     if c.ema_decay > 0 else None)
    self._engine = steps.StepEngine(self.flow, self.optimizer, self._variables,
                                    grad_clip_norm=c.grad_clip_norm,
                                    global_batch_size=c.batch_size, averages=self.averages,
                                    jit=c.jit)
    self.checkpoints = checkpoints.TrainingCheckpoints(
        self.model_dir, dict(flow=self.flow, optimizer=self.optimizer, step=self._step,
                             lr_scale=self._lr_scale),
        self.averages, c.keep_checkpoints, chief=self.is_chief)

  def _write_config(self, saved):
    """Writes `config.json` (when new or changed, or without the data record), logging what a
    resume changed."""
    c = self.config
    os.makedirs(self.model_dir, exist_ok=True)
    record = (tuple(self.dataset.image_shape), int(self.num_bins))
    if saved == c and config_lib.read_data_record(self.model_dir) == record:
      return
    changed = [f"{name}: {old!r} -> {new!r}"
               for name, old, new in (saved.differences(c, ignore=()) if saved else [])]
    if changed:
      logging.info("Run settings changed on resume: %s", "; ".join(changed))
      if saved.train_steps != c.train_steps and c.lr_schedule != "constant":
        logging.info("The %s learning-rate decay now reaches its floor at step %d.",
                     c.lr_schedule, c.train_steps)
    config_lib.write_train_config(self.model_dir, c, *record)

  # --- state ---------------------------------------------------------------------------------
  @property
  def step(self):
    return int(self._step.numpy())

  @property
  def learning_rate_scale(self):
    return float(self._lr_scale.numpy())

  @property
  def split_fixed(self):
    """Whether the flow's split is fixed (False while the pilots of `config.uses_pilot` run)."""
    return bool(self.flow.split_fixed.numpy())

  @property
  def collects_statistics(self):
    """Whether the next step folds its LC batch sums into `flow.lc_statistics`.

    While the split is open (its pilots collect the statistics it is fixed from), and always
    for a split fixed from the start (`static`, `random`: for the heatmaps); a split fixed by
    pilots keeps the statistics it was fixed from.
    """
    return not self.split_fixed or not self.config.uses_pilot

  def skip_to(self, step):
    """Moves the global step to `step` without training (eager, in `strategy.scope()`).

    For steps of the budget spent elsewhere (the `nosplit` pilots' sub-runs): the data stream
    and the learning-rate decay continue from `step`; the optimizer's own step count (hence
    its warm-up) is left as it is.
    """
    self._step.assign(step)

  # --- data ----------------------------------------------------------------------------------
  def _stream(self, batch_size, start_step):
    """The training stream in batches of `batch_size` from batch `start_step` on."""
    c = self.config
    return data.make_train_pipeline(self.dataset.train(), batch_size, self.num_bins,
                                    c.stream_seed,
                                    shuffle_buffer=c.shuffle_buffer, start_step=start_step,
                                    dataset_size=self.dataset.num_train)

  def global_batch(self, step):
    """The global batch of `step` of the training stream, as one tensor (not distributed)."""
    return next(iter(self._stream(self.config.batch_size, step)))

  def distributed_iterator(self, start_step=None):
    """Iterator over the distributed training batches from `start_step` (default: now)."""
    start = self.step if start_step is None else start_step
    return iter(self.strategy.distribute_datasets_from_function(
        distribute.dataset_fn(self._stream, self.config.batch_size, start)))

  # --- the step (lcflow_tf.steps) ------------------------------------------------------------
  def _step_fn(self, collect):
    if collect in self._step_fns:
      return self._step_fns[collect]
    strategy, engine = self.strategy, self._engine

    # Traced without AutoGraph (like every graph function of the library): the step and the
    # flow have no tensor-dependent Python control flow (the skip is an explicit tf.cond), and
    # AutoGraph's conversion of the whole flow's source is skipped at every trace.
    @tf.function(autograph=False)
    def step_fn(dist_x):
      loss, grads, norm, finite, sums = strategy.run(engine.replica_step,
                                                     args=(dist_x, collect))
      loss, norm, finite, sums = steps.first_replica((loss, norm, finite, sums))
      lr = self.optimizer.learning_rate  # the rate of this step, before the update
      engine.apply(grads, finite, sums, collect)
      self._step.assign_add(1)
      return loss, norm, finite, lr

    self._step_fns[collect] = step_fn
    return step_fn

  def train_step(self, dist_batch):
    """One step on a distributed batch; returns (loss nats/image, grad norm, finite, lr).

    The update (and the statistics update) is skipped when the loss or the gradient norm is
    not finite; the step counter advances either way.
    """
    with self.strategy.scope():
      loss, norm, finite, lr = self._step_fn(self.collects_statistics)(dist_batch)
    return float(loss), float(norm), bool(finite), float(lr)

  # --- checkpoints and recovery --------------------------------------------------------------
  def save_checkpoint(self):
    """Writes a checkpoint of the current step; returns its path."""
    return self.checkpoints.save()

  def recover_from_nonfinite(self):
    """Restores the latest checkpoint and lowers the learning rate by `nonfinite_lr_factor`.

    Raises:
      TrainingError: when there is no checkpoint to go back to.
    """
    with self.strategy.scope():
      latest = self.checkpoints.restore_latest()
      if latest is None:
        raise TrainingError("training diverged (non-finite loss or gradients) before the "
                            "first checkpoint; lower --learning_rate or --grad_clip_norm.")
      self._lr_scale.assign(self._lr_scale * self.config.nonfinite_lr_factor)
    logging.warning("Restored %s (step %d) after non-finite steps; learning rate scale is now "
                    "%g.", latest, self.step, self.learning_rate_scale)
    return latest

  # --- averaged weights and summaries --------------------------------------------------------
  @contextlib.contextmanager
  def averaged_weights(self):
    """Context in which `flow` holds the averaged weights (the raw ones when `ema_decay=0`).

    The raw weights are back on exit; training must not run inside it.

    Yields:
      "ema" or "raw": which weights `flow` holds.
    """
    if self.averages is None:
      yield "raw"
      return
    with self.strategy.scope(), self.averages.swapped():
      yield "ema"

  def write_images(self):
    """Sample grids and LC heatmaps of the current model as TensorBoard images (chief only).

    The samples come from the averaged weights (`averaged_weights`); the heatmaps show the
    LC statistics, which were collected with the raw weights during training. Nothing for a
    flow with open junctions (a `nosplit` pilot's: it has no split to show).
    """
    if not self.is_chief or self.flow.open_junctions_from is not None:
      return
    with self.averaged_weights():
      summaries.write_images(self.summary_writer, self.flow, self.num_bins, self.step)

  def bits_per_dim(self, loss):
    """Training bits/dim of a loss in nats per image."""
    return float(flows.log_prob_to_bits_per_dim(-loss, self.flow.image_shape, self.num_bins))

  # --- the loop ------------------------------------------------------------------------------
  def loop(self, until_step=None):
    """A `loop.TrainingLoop` to `until_step` (default, and at most, `config.train_steps`)."""
    c = self.config
    return loop_lib.TrainingLoop(self, c.train_steps if until_step is None
                                 else min(until_step, c.train_steps))

  def train(self, until_step=None):
    """Trains until `until_step` (default `config.train_steps`); returns a `TrainResult`.

    Raises:
      ValueError: while the split is open (a run whose pilots fix its split trains with
        `lcflow_tf.pilots.train`).
      TrainingError: when training diverges beyond recovery.
    """
    loop = self.loop(until_step)
    while self.step < loop.target:
      if not self.split_fixed:
        raise ValueError(f"Trainer.train: the {self.flow_config.split!r} split of this run is "
                         "not fixed yet; its pilots fix it: train the run with "
                         "lcflow_tf.pilots.train(trainer).")
      loop.run()
    return loop.finish()


def train(config, model_dir, strategy=None, dataset=None):
  """Builds a `Trainer` and trains to `config.train_steps`; returns its `TrainResult`.

  For a run whose split is fixed from the start; `lcflow_tf.pilots.run` trains any run.
  """
  return Trainer(config, model_dir, strategy=strategy, dataset=dataset).train()
