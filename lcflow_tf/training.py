"""Distributed maximum-likelihood training of a flow, with the LC pilot protocol.

`train(config, model_dir)` (or `Trainer(...).train()`) runs one `TrainConfig`:

* Strategy: `distribute.make_strategy` (`auto` = MirroredStrategy over all visible GPUs, else the
  default strategy). Every variable (flow, optimizer, step, learning-rate scale, weight
  averages) is created inside `strategy.scope()`.
* Input: `strategy.distribute_datasets_from_function` over `data.make_train_pipeline` with
  per-replica batches of `batch_size / num_replicas`; each input pipeline skips the batches
  of the steps already taken, so a resumed run sees the batches it would have seen. Global
  step s consumes exactly the images (and dequantisation noise) of global batch s of the
  single-device stream, so 1 and N replicas, on one worker or on several, train on the same
  data: with several workers every worker builds the global stream and keeps its own
  contiguous slice of each global batch (see `distribute.dataset_fn`).
* Step: per replica, `loss = sum(-log p(x)) / global_batch_size`; the gradients are summed
  over replicas (`all_reduce`), so they equal the gradient of the global-batch mean; they
  are clipped by their global norm; when the loss or the norm is not finite the update is
  skipped (`tf.cond`) and counted. The Adam update (Keras 3 `keras.optimizers.Adam`) is
  applied in cross-replica context, variable by variable through `strategy.extended.update`
  with the optimizer's own `update_step`, because Keras's `apply` sums gradients over
  replicas again and cannot sit inside `tf.cond` in replica context.
* Learning rate (`lcflow_tf.schedules.WarmupDecay`): linear warm-up over `warmup_steps`
  optimizer steps, then `lr_schedule` (`constant`, or a `cosine`/`linear` decay driven by the
  global step that reaches `lr_min_ratio * learning_rate` at `train_steps`), times the
  learning-rate scale (lowered on non-finite recovery). Extending `train_steps` on resume
  stretches the decay to the new end.
* Weight averages (`ema_decay` > 0; `lcflow_tf.averaging.WeightAverage`): an exponential
  moving average of every trainable variable (not ActNorm's `initialized`, the LC statistics,
  the permutations or `split_fixed`), mirrored like the weights and updated in the same
  `tf.cond` branch as the Adam update, right after it, so a skipped step leaves it alone;
  decay `min(ema_decay, (1 + n) / (10 + n))` after n updates. The averages start from the
  initialised weights and restart from the current weights when the pilot ends (the fixed
  split changes what the weights mean; with `lc_reinit` they are the fresh weights). The
  sample grids of the summaries (`write_images`, `averaged_weights`), `evaluation.load_run`
  and hence eval.py, export.py and train.py's final evaluation and export use the averages
  by default.
* Likelihood contributions: the same pass returns the LC batch sums
  (`Flow.log_prob_and_lc_batch`); they are summed over replicas (`strategy.reduce`) and folded
  into `flow.lc_statistics` in cross-replica context, while the split is not fixed yet and
  always for the `static`/`random` splits (for the heatmaps).
* Pilot protocol (data-dependent splits `lc`, `lc_reverse`, `variance`): the first
  `lc_pilot_steps` steps train with the static split while collecting statistics; then
  `finish_pilot` fixes every junction's permutation (`flow.fix_split()`) and either continues
  from the pilot weights (default) or, with `lc_reinit`, resets every trainable variable to
  a freshly built flow's initial values, re-runs the ActNorm initialisation and resets the
  optimizer, keeping the permutations and the statistics. `train_steps` counts the pilot.
* ActNorm: initialised eagerly, in cross-replica context, from the global first batch before
  the first step, so any number of replicas starts from the same state as one device.
* Checkpoints (`tf.train.CheckpointManager` in `model_dir`): the flow (weights, ActNorm
  state, split permutations, LC statistics, `split_fixed`), the optimizer, the step, the
  learning-rate scale and the weight averages (as `averages`, with their update count). A
  run resumes from the latest one ("Resuming from step N"); a checkpoint without averages
  (an older run, or `ema_decay` turned on at resume) restores the rest, and the averages
  restart from its weights. TF writes
  a checkpoint's shards under `<prefix>_temp/`, merges them into `<prefix>.index/.data-*`,
  and only then replaces the `checkpoint` index file atomically, so a crash never leaves a
  partial checkpoint as the latest. Rewriting an existing prefix is not atomic (the merge
  renames the data file over the old one, then rewrites the `.index` in place), so the
  trainer never saves over the newest checkpoint: when the pilot ends at a step that already
  has one (written before the split was fixed), the fixed split is saved with the next
  checkpoint; a run resumed from that checkpoint fixes the same split again from the same
  saved statistics. Non-chief workers (`multi_worker`) write their checkpoints into a
  temporary directory that is removed at the end, never into `model_dir`.
* Non-finite steps: no periodic checkpoint is written during a streak of them; after
  `max_nonfinite_steps` consecutive ones, the latest checkpoint is restored (weights,
  optimizer and averages) and the learning rate is multiplied by `nonfinite_lr_factor`
  (kept in later checkpoints); after
  `max_nonfinite_restores` such restores training stops with `TrainingError`.
* TensorBoard events are written with `tf.summary.write` in the format of TensorBoard's
  scalars and images plugins (`tensorboard --logdir MODEL_DIR`; tensorboard is in
  requirements.txt, and the library itself does not import it).
* Logs: a progress line every `log_every` steps (step, train bits/dim, images/s, learning
  rate, ETA); TensorBoard scalars in `model_dir/train` and, every `images_every` steps and at
  the end, sample grids and LC heatmaps.
"""

import contextlib
import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from lcflow_tf import averaging
from lcflow_tf import checkpoints
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import schedules
from lcflow_tf import viz

SUMMARY_TEMPERATURES = (0.0, 0.7, 1.0)
SUMMARY_SAMPLES = 36
MIXED_PRECISION_POLICY = "mixed_bfloat16"


class TrainingError(RuntimeError):
  """Training cannot continue (diverged, or nothing to restore)."""


def seed_initializers(seed):
  """Seeds Keras's weight initialisers (and Python's and NumPy's RNGs) with `seed`.

  TensorFlow's global seed is left unset: `tf.data` mixes it into the shuffling seeds, and
  the training stream must depend on `config.seed` only (so a resumed run, or any process,
  sees the same batches).
  """
  keras.utils.set_random_seed(seed)
  tf.random.set_seed(None)


# --- mixed precision -------------------------------------------------------------------------
def apply_mixed_precision(flow, policy=MIXED_PRECISION_POLICY):
  """Runs the coupling networks of `flow` under a Keras mixed-precision policy.

  The networks compute in bfloat16 (float32 variables); their outputs are cast back to the
  flow's dtype by the couplings, so log-densities, log-dets and the optimizer stay float32.
  bfloat16 has float32's exponent range, so no loss scaling is needed.
  """
  count = 0
  for module in flow.bijector.submodules:
    network = getattr(module, "conditioner", None)
    if isinstance(network, keras.Model):
      for layer in network.layers:
        layer.dtype_policy = policy
        count += 1
  return count


# --- TensorBoard summaries (written in TensorBoard's format without importing it) ------------
def _metadata(plugin):
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin
  return metadata


def summary_scalar(name, value, step):
  """A scalar event readable by TensorBoard's scalars dashboard."""
  return tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                          metadata=_metadata("scalars"))


def summary_image(name, image, step):
  """One uint8 image [H, W, C] as an event of TensorBoard's images dashboard (PNG)."""
  image = np.asarray(image, np.uint8)
  encoded = tf.io.encode_png(image)
  tensor = tf.stack([tf.as_string(image.shape[1]), tf.as_string(image.shape[0]), encoded])
  return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


# --- results ---------------------------------------------------------------------------------
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

  Attributes:
    flow, optimizer, strategy, dataset, model_dir, config.
    checkpoints: the run's `checkpoints.TrainingCheckpoints`.
    averages: the `averaging.WeightAverage` of `flow.trainable_variables`, or None when
      `config.ema_decay` is 0.
  """

  def __init__(self, config, model_dir, strategy=None, dataset=None):
    if not isinstance(config, config_lib.TrainConfig):
      raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
    if not model_dir:
      raise ValueError("model_dir must be a non-empty path.")
    self.config = config
    self.model_dir = os.path.abspath(model_dir)
    saved = config_lib.check_resumable(self.model_dir, config)
    self.strategy = strategy or distribute.make_strategy(config.strategy, config.cpu_replicas)
    replicas = self.strategy.num_replicas_in_sync
    if config.batch_size % replicas:
      raise ValueError(f"batch_size={config.batch_size} is not divisible by the "
                       f"{replicas} replicas of the {type(self.strategy).__name__}; use a "
                       "multiple of the replica count.")
    if config.mixed_precision and not tf.config.list_logical_devices("GPU"):
      raise ValueError("mixed_precision needs a GPU (bfloat16 matmuls only pay off there); no "
                       "GPU is visible. Run without --mixed_precision.")
    self.dataset = dataset or data.load_dataset(config.dataset, config.data_dir, config.n_bits)
    self.flow_config = config.flow_config(self.dataset.image_shape)
    if self.dataset.num_train == 0:
      raise ValueError(f"the training set of {config.dataset} is empty (0 images).")
    if self.dataset.num_train is not None and config.batch_size > self.dataset.num_train:
      raise ValueError(f"batch_size={config.batch_size} is larger than the training set of "
                       f"{config.dataset} ({self.dataset.num_train} images).")
    self.num_bins = self.dataset.num_bins
    self.is_chief = distribute.is_chief(self.strategy)
    if self.is_chief:  # the other workers never write into model_dir
      files.check_creatable_dir(self.model_dir, "model_dir")
    # Everything is valid: from here on, files are written.

    with self.strategy.scope():
      seed_initializers(config.seed)
      self.flow = flows.Flow(self.flow_config)
      if config.mixed_precision:
        apply_mixed_precision(self.flow)
      self._variables = self.flow.trainable_variables
      self._step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
      self._lr_scale = tf.Variable(1.0, dtype=tf.float32, trainable=False, name="lr_scale")
      self.optimizer = keras.optimizers.Adam(schedules.WarmupDecay(
          config.learning_rate, config.warmup_steps, kind=config.lr_schedule,
          decay_steps=config.train_steps, min_ratio=config.lr_min_ratio, scale=self._lr_scale,
          progress=self._step))
      self.optimizer.build(self._variables)
      self.averages = (averaging.WeightAverage(self._variables, config.ema_decay)
                       if config.ema_decay > 0 else None)
      self.checkpoints = checkpoints.TrainingCheckpoints(
          self.model_dir, dict(flow=self.flow, optimizer=self.optimizer, step=self._step,
                               lr_scale=self._lr_scale),
          self.averages, config.keep_checkpoints, chief=self.is_chief)
      latest = self.checkpoints.restore_latest()
      if latest:
        logging.info("Resuming from step %d (%s)", self.step, latest)
      else:
        self.flow.initialize(self.global_batch(0))
        if self.averages is not None:
          self.averages.reset()  # from the initialised weights
    if self.is_chief:  # after the restore: an unreadable checkpoint changes nothing here
      os.makedirs(self.model_dir, exist_ok=True)
      if saved != config:
        if saved is not None:
          changed = [f"{name}: {old!r} -> {new!r}"
                     for name, old, new in saved.differences(config, ignore=())]
          logging.info("Run settings changed on resume: %s", "; ".join(changed))
          if saved.train_steps != config.train_steps and config.lr_schedule != "constant":
            logging.info("The %s learning-rate decay now reaches its floor at step %d.",
                         config.lr_schedule, config.train_steps)
        config_lib.write_train_config(self.model_dir, config)
    self._summary_writer = (tf.summary.create_file_writer(os.path.join(self.model_dir, "train"))
                            if self.is_chief else tf.summary.create_noop_writer())
    self._step_fns = {}
    self._compute_fn = (tf.function(self._loss_and_grads, jit_compile=True) if config.jit
                        else self._loss_and_grads)

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
    return self.config.split in ("static", "random") or not bool(self.flow.split_fixed.numpy())

  @property
  def pilot_pending(self):
    """Whether the split still has to be fixed at the end of the pilot."""
    return self.config.uses_pilot and not bool(self.flow.split_fixed.numpy())

  # --- data ----------------------------------------------------------------------------------
  def _stream(self, batch_size, start_step):
    """The training stream in batches of `batch_size` from batch `start_step` on."""
    c = self.config
    return data.make_train_pipeline(self.dataset.train(), batch_size, self.num_bins, c.seed,
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

  # --- the step ------------------------------------------------------------------------------
  def _loss_and_grads(self, x, collect):
    with tf.GradientTape() as tape:
      if collect:
        log_prob, sums = self.flow.log_prob_and_lc_batch(x)
      else:
        log_prob, sums = self.flow.log_prob(x), None
      loss = tf.reduce_sum(-log_prob) / float(self.config.batch_size)
    grads = tape.gradient(loss, self._variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self._variables)]
    return loss, grads, sums

  def _replica_step(self, x, collect):
    loss, grads, sums = self._compute_fn(x, collect)
    reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                              [loss] + list(grads))
    loss, grads = reduced[0], reduced[1:]
    norm = tf.linalg.global_norm(grads)
    finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
    grads, _ = tf.clip_by_global_norm(grads, self.config.grad_clip_norm, use_norm=norm)
    return loss, grads, norm, finite, sums

  def _step_fn(self, collect):
    if collect in self._step_fns:
      return self._step_fns[collect]
    strategy = self.strategy
    optimizer = self.optimizer

    def first(value):
      return strategy.experimental_local_results(value)[0]

    def update(var, grad, lr):
      return optimizer.update_step(grad, var, lr)

    @tf.function
    def step_fn(dist_x):
      loss, grads, norm, finite, sums = strategy.run(self._replica_step, args=(dist_x, collect))
      loss, norm, finite = first(loss), first(norm), first(finite)
      if collect:
        sums = tf.nest.map_structure(
            lambda t: strategy.reduce(tf.distribute.ReduceOp.SUM, t, axis=None), sums)
      lr = optimizer.learning_rate

      def apply():
        for grad, var in zip(grads, self._variables):
          var = var.value if isinstance(var, keras.Variable) else var
          strategy.extended.update(var, update, args=(grad, lr), group=False)
        optimizer.iterations.assign_add(1)
        if self.averages is not None:  # after the weights moved; never on a skipped step
          self.averages.update()
        if collect:
          self.flow.lc_statistics.update(sums)
        return tf.constant(True)

      tf.cond(finite, apply, lambda: tf.constant(False))
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
    """Ends the pilot: fixes the split from the statistics; with `lc_reinit`, fresh weights.

    Fresh weights: every trainable variable takes the value it has in a flow freshly built
    from the same config and seed, the ActNorms are re-initialised (with the fixed split) on
    the global batch of the current step, and the optimizer's state (moments, iterations,
    hence the warm-up) is zeroed. The permutations and the statistics are kept. Either way
    the weight averages restart from the weights training continues with (the fixed split
    changes what the weights mean).

    Returns:
      The permutations that were set, outermost junction first.
    """
    with self.strategy.scope():
      chosen = self.flow.fix_split()
      if self.config.lc_reinit:
        seed_initializers(self.config.seed)
        fresh = flows.Flow(self.flow_config)
        for var, value in zip(self._variables, fresh.trainable_variables):
          var.assign(value.numpy())
        del fresh
        self.flow.initialize(self.global_batch(self.step), force=True)
        for var in self.optimizer.variables:
          var.assign(tf.zeros(var.shape, var.dtype))
      if self.averages is not None:
        self.averages.reset()
    averages = self.averages is not None
    logging.info("Pilot finished at step %d: split %r fixed from %d images%s%s.", self.step,
                 self.config.split, int(self.flow.lc_statistics.count.numpy()),
                 "; weights and optimizer re-initialised" if self.config.lc_reinit else
                 "; continuing from the pilot weights",
                 "; weight averages restarted from these weights" if averages else "")
    return chosen

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

  # --- averaged weights ----------------------------------------------------------------------
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

  # --- summaries -----------------------------------------------------------------------------
  def write_images(self):
    """Sample grids and LC heatmaps of the current model as TensorBoard images.

    The samples come from the averaged weights (`averaged_weights`); the heatmaps show the
    LC statistics, which were collected with the raw weights during training.
    """
    if not self.is_chief:
      return
    step = self.step
    with self._summary_writer.as_default(), self.averaged_weights():
      for t in SUMMARY_TEMPERATURES:
        grid = viz.sample_grid(self.flow, self.num_bins, t, SUMMARY_SAMPLES, seed=step)
        summary_image(f"samples/temperature_{t:.1f}", grid, step)
      if self.flow.junctions and self.flow.lc_statistics.has_data():
        summary_image("lc/heatmaps", viz.lc_overview(self.flow), step)
    self._summary_writer.flush()

  def _bits_per_dim(self, loss):
    dims = float(np.prod(self.flow.image_shape))
    return (loss + dims * math.log(self.num_bins)) / (dims * math.log(2.0))

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
    losses, bpds = {}, {}
    nonfinite_total = consecutive = restores = 0
    iterator = self.distributed_iterator()
    t0 = time.time()
    interval_t, interval_steps, interval_losses, interval_norms = t0, 0, [], []
    images_seen = 0
    while self.step < target:
      if self.pilot_pending and self.step >= c.lc_pilot_steps:
        self.finish_pilot()
        if self.checkpoints.saved_step != self.step:  # never rewrite the newest in place
          self.save_checkpoint()
      loss, norm, finite, lr = self.train_step(next(iterator))
      step = self.step
      images_seen += c.batch_size
      if finite:
        consecutive = 0
        losses[step], bpds[step] = loss, self._bits_per_dim(loss)
        interval_losses.append(loss)
        interval_norms.append(norm)
      else:
        consecutive += 1
        nonfinite_total += 1
        logging.warning("Step %d: non-finite loss (%g) or gradient norm (%g); update skipped "
                        "(%d in a row).", step, loss, norm, consecutive)
        if consecutive >= c.max_nonfinite_steps:
          if restores >= c.max_nonfinite_restores:
            raise TrainingError(
                f"training diverged: {consecutive} consecutive non-finite steps at step {step} "
                f"after {restores} restore(s) with a lowered learning rate; lower "
                "--learning_rate or --grad_clip_norm.")
          self.recover_from_nonfinite()
          restores += 1
          consecutive = 0
          iterator = self.distributed_iterator()
          continue
      interval_steps += 1
      if step % c.log_every == 0 or step == target:
        now = time.time()
        rate = interval_steps * c.batch_size / max(now - interval_t, 1e-9)
        mean_loss = float(np.mean(interval_losses)) if interval_losses else float("nan")
        mean_norm = float(np.mean(interval_norms)) if interval_norms else float("nan")
        eta = (target - step) * c.batch_size / max(rate, 1e-9)
        logging.info("step %d/%d  train %.4f bits/dim  %.0f images/s  lr %.2e  grad norm %.3g"
                     "  ETA %s%s", step, c.train_steps, self._bits_per_dim(mean_loss), rate, lr,
                     mean_norm, _format_duration(eta),
                     f"  ({nonfinite_total} non-finite skipped)" if nonfinite_total else "")
        with self._summary_writer.as_default():
          for name, value in (("train/loss_nats", mean_loss),
                              ("train/bits_per_dim", self._bits_per_dim(mean_loss)),
                              ("train/learning_rate", lr), ("train/grad_norm", mean_norm),
                              ("train/images_per_sec", rate),
                              ("train/nonfinite_steps", nonfinite_total)):
            summary_scalar(name, value, step)
        interval_t, interval_steps, interval_losses, interval_norms = now, 0, [], []
      if step % c.checkpoint_every == 0 and step != target and not consecutive:
        self.save_checkpoint()  # never in a non-finite streak: checkpoints stay "last good"
      if step % c.images_every == 0 and step != target:
        self.write_images()
    if self.step != start or self.checkpoints.last_path is None:
      self.save_checkpoint()
      self.write_images()
    self._summary_writer.flush()
    self.checkpoints.close()
    elapsed = time.time() - t0
    return TrainResult(step=self.step, losses=losses, bits_per_dim=bpds,
                       nonfinite_steps=nonfinite_total, restores=restores,
                       images_per_sec=images_seen / max(elapsed, 1e-9),
                       checkpoint=self.checkpoints.last_path, resumed_from=start)


def train(config, model_dir, strategy=None, dataset=None):
  """Builds a `Trainer` and trains to `config.train_steps`; returns its `TrainResult`."""
  return Trainer(config, model_dir, strategy=strategy, dataset=dataset).train()


def _format_duration(seconds):
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h:d}:{m:02d}:{s:02d}"
