"""Distributed maximum-likelihood training of a flow: the `Trainer` and its loop.

`train(config, model_dir)` (or `Trainer(...).train()`) runs one `TrainConfig`. What the loop
uses has its own module: the strategy and the per-replica input (`lcflow_tf.distribute`), the
checkpoints and their crash-safe rules (`lcflow_tf.checkpoints`), the progress log and
TensorBoard summaries (`lcflow_tf.summaries`), the learning-rate schedule
(`lcflow_tf.schedules`), the weight averages (`lcflow_tf.averaging`) and the LC pilot protocol
(`lcflow_tf.lc`). Every variable (flow, optimizer, step, learning-rate scale, weight
averages) is created inside `strategy.scope()`.

* Input: `strategy.distribute_datasets_from_function` over `data.make_train_pipeline` with
  per-replica batches of `batch_size / num_replicas`; each input pipeline skips the batches
  of the steps already taken, so a resumed run sees the batches it would have seen. Global
  step s consumes exactly the images (and dequantisation noise) of global batch s of the
  single-device stream, so 1 and N replicas, on one worker or on several, train on the same
  data (see `distribute.dataset_fn`).
* Step (`lcflow_tf.steps.StepEngine`, shared with `FlowModel`): per replica,
  `loss = sum(-log p(x)) / global_batch_size`; loss and gradients are summed over replicas
  (`all_reduce`), so they equal the global-batch mean and its gradient; the gradients are
  clipped by their global norm; when the loss or the norm is not finite the update is
  skipped (`tf.cond`) and counted. The Adam update (Keras 3 `keras.optimizers.Adam`,
  its `apply`) runs in cross-replica context on the reduced gradients.
* Learning rate (`schedules.WarmupDecay`): linear warm-up over `warmup_steps` optimizer
  steps, then `lr_schedule` (`constant`, or a `cosine`/`linear` decay driven by the global
  step that reaches `lr_min_ratio * learning_rate` at `train_steps`), times the learning-rate
  scale (lowered on non-finite recovery). Extending `train_steps` on resume stretches the
  decay to the new end.
* Weight averages (`ema_decay` > 0; `averaging.WeightAverage`) of every trainable variable,
  mirrored like the weights and updated in the same `tf.cond` branch as the Adam update,
  right after it, so a skipped step leaves them alone. They start from the initialised
  weights and restart when the pilot ends. The sample grids of the summaries
  (`write_images`, `averaged_weights`), `evaluation.load_run` and hence eval.py, export.py
  and train.py's final evaluation and export use the averages by default.
* Likelihood contributions: the same pass returns the LC batch sums
  (`Flow.log_prob_and_lc_batch`); they are summed over replicas (`strategy.reduce`) and folded
  into `flow.lc_statistics` in cross-replica context whenever `lc.collects_statistics`.
* Pilots (data-dependent splits, `lc.DATA_DEPENDENT_SPLITS`; protocols in `lcflow_tf.lc`):
  with `lc_pilot="static"` the first `lc_pilot_steps` steps train with the static split while
  collecting statistics; then `finish_pilot` runs `lc.finish_pilot` (fix every junction's
  permutation; continue from the pilot weights, or with `lc_reinit` restart from a freshly
  built flow's weights with a fresh optimizer). With `lc_pilot="nosplit"`,
  `run_nosplit_pilots` first trains one sub-run per junction (`pilot_trainer`, in
  `model_dir/pilot_<j>`, resumable), fixes the junctions one at a time from them, and sets
  this run's untrained flow up with the fixed orders at step `config.pilot_steps_total`.
  `train_steps` counts the pilots.
* ActNorm: initialised eagerly, in cross-replica context, from the global first batch before
  the first step, so any number of replicas starts from the same state as one device.
* Checkpoints (`checkpoints.TrainingCheckpoints`): every `checkpoint_every` steps and at the
  end; a run resumes from the latest one ("Resuming from step N"). The newest checkpoint is
  never saved over: when the pilot ends at a step that already has one (written before the
  split was fixed), the fixed split is saved with the next checkpoint; a run resumed from that
  checkpoint fixes the same split again from the same saved statistics.
* Non-finite steps: no periodic checkpoint is written during a streak of them; after
  `max_nonfinite_steps` consecutive ones, the latest checkpoint is restored (weights,
  optimizer and averages) and the learning rate is multiplied by `nonfinite_lr_factor`
  (kept in later checkpoints); after `max_nonfinite_restores` such restores training stops
  with `TrainingError`.
* Logs (`summaries`): a progress line and TensorBoard scalars every `log_every` steps, in
  `model_dir/train`; every `images_every` steps and at the end, sample grids and LC heatmaps.
"""

import contextlib
import dataclasses
import os
import time

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
from lcflow_tf import schedules
from lcflow_tf import steps
from lcflow_tf import summaries

MIXED_PRECISION_POLICY = "mixed_bfloat16"


class TrainingError(RuntimeError):
  """Training cannot continue (diverged, or nothing to restore)."""


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


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a finished `Trainer.train` reports.

  Attributes:
    step: the global step reached.
    losses: {step: mean training loss in nats per image} of every step run by this call.
    bits_per_dim: {step: training bits/dim} of every step run by this call.
    nonfinite_steps: steps whose update was skipped (this call).
    restores: recoveries from non-finite steps (this call).
    images_per_sec: training throughput of this call.
    checkpoint: path of the last checkpoint written.
    resumed_from: the step this call started at.
  """
  step: int
  losses: dict
  bits_per_dim: dict
  nonfinite_steps: int
  restores: int
  images_per_sec: float
  checkpoint: str | None
  resumed_from: int


@dataclasses.dataclass
class _Tally:
  """The counters of one `Trainer.train` call."""
  losses: dict = dataclasses.field(default_factory=dict)
  bits_per_dim: dict = dataclasses.field(default_factory=dict)
  nonfinite: int = 0
  consecutive: int = 0
  restores: int = 0
  images: int = 0


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
    dataset: an `lcflow_tf.data.ImageDataset` (default: `data.load_dataset` of the config).
    split_orders: channel orders set on the first junctions before the flow is initialised
      (used by the `nosplit` protocol: its pilot of junction j gets the orders of junctions
      < j); a restored checkpoint holds the same ones.

  Attributes:
    flow, optimizer, strategy, dataset, model_dir, config.
    flow_config: the `FlowConfig` of `flow` (the config's model with the data's image shape).
    checkpoints: the run's `checkpoints.TrainingCheckpoints`.
    averages: the `averaging.WeightAverage` of `flow.trainable_variables`, or None when
      `config.ema_decay` is 0.
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
    self.dataset = dataset or data.load_dataset(config.dataset, config.data_dir, config.n_bits,
                                                config.pad_to)
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
      if config.static_pilots:  # the control's identity is fixed when its pilots end
        self.flow.split_fixed.assign(False)
      latest = self.checkpoints.restore_latest()
      if latest:
        logging.info("Resuming from step %d (%s)", self.step, latest)
      elif not self.nosplit_pending:  # nosplit: initialised once its pilots fixed the split
        self.flow.initialize(self.global_batch(0))
        if self.averages is not None:
          self.averages.reset()  # from the initialised weights
    if self.is_chief:  # after the restore: an unreadable checkpoint changes nothing here
      self._write_config(saved)
    self._summary_writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
                            if self.is_chief else tf.summary.create_noop_writer())
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
    self.flow = flows.Flow(self.flow_config)
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
    """Writes `config.json` (when new or changed), logging what a resume changed."""
    c = self.config
    os.makedirs(self.model_dir, exist_ok=True)
    if saved == c:
      return
    if saved is not None:
      changed = [f"{name}: {old!r} -> {new!r}"
                 for name, old, new in saved.differences(c, ignore=())]
      logging.info("Run settings changed on resume: %s", "; ".join(changed))
      if saved.train_steps != c.train_steps and c.lr_schedule != "constant":
        logging.info("The %s learning-rate decay now reaches its floor at step %d.",
                     c.lr_schedule, c.train_steps)
    config_lib.write_train_config(self.model_dir, c)

  # --- state ---------------------------------------------------------------------------------
  @property
  def step(self):
    return int(self._step.numpy())

  @property
  def learning_rate_scale(self):
    return float(self._lr_scale.numpy())

  @property
  def collects_statistics(self):
    """Whether the next step folds its LC batch sums into `flow.lc_statistics`."""
    return lc.collects_statistics(self.flow_config.split, self.flow.split_fixed.numpy(),
                                  self.config.static_pilots)

  @property
  def pilot_pending(self):
    """Whether the split still has to be fixed at the end of the pilot."""
    return lc.pilot_pending(self.flow_config.split, self.flow.split_fixed.numpy(),
                            self.config.static_pilots)

  @property
  def nosplit_pending(self):
    """Whether the `nosplit` pilots still have to run (`run_nosplit_pilots`)."""
    return self.config.lc_pilot == "nosplit" and self.pilot_pending

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

  # --- pilot protocol ------------------------------------------------------------------------
  def finish_pilot(self):
    """Ends the pilot: `lc.finish_pilot` with this run's flow, optimizer and averages.

    The split is fixed from the statistics. With `lc_reinit`, every trainable variable takes
    the value it has in a flow freshly built from the same config and seed, the ActNorms are
    re-initialised (with the fixed split) on the global batch of the current step, and the
    optimizer's state (moments, iterations, hence the warm-up) is zeroed. Either way the
    weight averages restart from the weights training continues with.

    Returns:
      The permutations that were set, outermost junction first.
    """
    c = self.config
    with self.strategy.scope():
      chosen = lc.finish_pilot(self.flow.junctions, self.flow.lc_statistics,
                               self.flow_config.split, self.flow.split_fixed,
                               fresh_start=self._fresh_start() if c.lc_reinit else None,
                               averages=self.averages)
    logging.info("Pilot finished at step %d: split %r fixed from %d images%s%s.", self.step,
                 self.flow_config.split, int(self.flow.lc_statistics.count.numpy()),
                 "; weights and optimizer re-initialised" if c.lc_reinit else
                 "; continuing from the pilot weights",
                 "; weight averages restarted from these weights" if self.averages is not None
                 else "")
    return chosen

  def pilot_trainer(self, junction, orders):
    """The `Trainer` of the sub-run of `nosplit` pilot `junction`, in `model_dir/pilot_<j>`.

    Args:
      junction: the junction it decides.
      orders: the fixed orders of the junctions above it, outermost first.
    """
    return Trainer(self.config.nosplit_pilot_config(junction),
                   os.path.join(self.model_dir, f"pilot_{junction}"), strategy=self.strategy,
                   dataset=self.dataset, split_orders=orders)

  def run_nosplit_pilots(self):
    """Runs the `nosplit` pilots (`lcflow_tf.lc`) and sets up the model from fresh weights.

    Pilot j trains `pilot_trainer(j, orders)` to `lc_pilot_steps` (resuming its own
    checkpoint after a crash; a finished pilot is only restored) and fixes junction j's order
    from its statistics at junction j. Then this run's flow, built from fresh weights and
    never trained, gets the orders (`lc.set_split`) and the pilots' statistics of each
    junction (for the heatmaps), the global step moves to `config.pilot_steps_total` (the
    budget counts the pilots; the data stream and the learning-rate decay continue from
    there, the warm-up restarts with the untouched optimizer), the ActNorms are initialised on
    that step's global batch with the fixed split, the averages restart from there, and a
    checkpoint holding the split is written before the model trains.

    Returns:
      The fixed orders, outermost junction first.
    """
    c = self.config
    orders, stats = [], self.flow.lc_statistics
    for j in range(len(self.flow.junctions)):
      pilot = self.pilot_trainer(j, orders)
      pilot.train(until_step=c.lc_pilot_steps)
      pilot_stats = pilot.flow.lc_statistics
      orders.append(lc.split_order(pilot_stats, j, self.flow_config.split))
      with self.strategy.scope():
        for mine, theirs in ((stats.mean_lc, pilot_stats.mean_lc),
                             (stats.mean_h, pilot_stats.mean_h),
                             (stats.mean_h2, pilot_stats.mean_h2)):
          mine[j].assign(theirs[j])
        stats.count.assign(pilot_stats.count)  # the same for every pilot: lc_pilot_steps batches
      logging.info("nosplit pilot %d finished: junction %d's %r order fixed from %d images.",
                   j, j, self.flow_config.split, int(pilot_stats.count.numpy()))
    with self.strategy.scope():
      lc.set_split(self.flow.junctions, orders, self.flow.split_fixed)
      self._step.assign(c.pilot_steps_total)
      self.flow.initialize(self.global_batch(self.step), force=True)
      if self.averages is not None:
        self.averages.reset()
    self.save_checkpoint()
    return orders

  def _fresh_start(self):
    """The `lc.FreshStart` of `lc_reinit`: a fresh flow's weights, data init, zero optimizer."""
    seed_initializers(self.config.seed)
    fresh = flows.Flow(self.flow_config)
    return lc.FreshStart(
        variables=tuple(self._variables),
        values=tuple(v.numpy() for v in fresh.trainable_variables),
        initialize=lambda: self.flow.initialize(self.global_batch(self.step), force=True),
        optimizer_variables=tuple(self.optimizer.variables))

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
    `nosplit` pilot's flow (its open junctions have no split to show).
    """
    if not self.is_chief or self.flow_config.pilot_junction is not None:
      return
    with self.averaged_weights():
      summaries.write_images(self._summary_writer, self.flow, self.num_bins, self.step)

  def bits_per_dim(self, loss):
    """Training bits/dim of a loss in nats per image."""
    return float(flows.log_prob_to_bits_per_dim(-loss, self.flow.image_shape, self.num_bins))

  # --- the loop ------------------------------------------------------------------------------
  def train(self, until_step=None):
    """Trains until `until_step` (default `config.train_steps`); returns a `TrainResult`.

    Raises:
      TrainingError: when training diverges beyond recovery.
    """
    c = self.config
    target = c.train_steps if until_step is None else min(until_step, c.train_steps)
    start = self.step
    if start >= target:
      logging.info("Step %d already reached (target %d); nothing to train.", start, target)
    progress = summaries.ProgressLog(self._summary_writer, c.log_every, c.batch_size,
                                     c.train_steps, self.flow.image_shape, self.num_bins)
    if self.nosplit_pending and start < target:
      self.run_nosplit_pilots()
    tally = _Tally()
    iterator = self.distributed_iterator()
    t0 = time.time()
    while self.step < target:
      if self.pilot_pending and self.step >= c.lc_pilot_steps:
        self.finish_pilot()
        if self.checkpoints.saved_step != self.step:  # never rewrite the newest in place
          self.save_checkpoint()
      loss, norm, finite, lr = self.train_step(next(iterator))
      step = self.step
      tally.images += c.batch_size
      if not self._count(tally, step, loss, norm, finite):  # restored a checkpoint
        iterator = self.distributed_iterator()
        continue
      progress.step(step, target, loss, norm, lr, finite, tally.nonfinite)
      if step % c.checkpoint_every == 0 and step != target and not tally.consecutive:
        self.save_checkpoint()  # never in a non-finite streak: checkpoints stay "last good"
      if step % c.images_every == 0 and step != target:
        self.write_images()
    return self._finish(start, tally, time.time() - t0)

  def _count(self, tally, step, loss, norm, finite):
    """Counts a step; after too many non-finite ones in a row, restores the last checkpoint.

    Returns:
      False when a checkpoint was restored (the data stream must restart), else True.

    Raises:
      TrainingError: when `max_nonfinite_restores` restores did not help.
    """
    c = self.config
    if finite:
      tally.consecutive = 0
      tally.losses[step], tally.bits_per_dim[step] = loss, self.bits_per_dim(loss)
      return True
    tally.consecutive += 1
    tally.nonfinite += 1
    logging.warning("Step %d: non-finite loss (%g) or gradient norm (%g); update skipped "
                    "(%d in a row).", step, loss, norm, tally.consecutive)
    if tally.consecutive < c.max_nonfinite_steps:
      return True
    if tally.restores >= c.max_nonfinite_restores:
      raise TrainingError(
          f"training diverged: {tally.consecutive} consecutive non-finite steps at step "
          f"{step} after {tally.restores} restore(s) with a lowered learning rate; lower "
          "--learning_rate or --grad_clip_norm.")
    self.recover_from_nonfinite()
    tally.restores += 1
    tally.consecutive = 0
    return False

  def _finish(self, start, tally, elapsed):
    """The final checkpoint and images (when this call trained), and the `TrainResult`."""
    if self.step != start or self.checkpoints.last_path is None:
      self.save_checkpoint()
      self.write_images()
    self._summary_writer.flush()
    self.checkpoints.close()
    return TrainResult(step=self.step, losses=tally.losses, bits_per_dim=tally.bits_per_dim,
                       nonfinite_steps=tally.nonfinite, restores=tally.restores,
                       images_per_sec=tally.images / max(elapsed, 1e-9),
                       checkpoint=self.checkpoints.last_path, resumed_from=start)


def train(config, model_dir, strategy=None, dataset=None):
  """Builds a `Trainer` and trains to `config.train_steps`; returns its `TrainResult`."""
  return Trainer(config, model_dir, strategy=strategy, dataset=dataset).train()
