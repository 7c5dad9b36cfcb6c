"""The training loop of a `training.Trainer`: steps, counts, recovery, periodic writes.

`TrainingLoop` runs the trainer's steps towards a target step, in one go (`Trainer.train`) or
in segments between which a protocol acts (`lcflow_tf.pilots` fixes the split there). Per
step it counts the loss, logs progress (`summaries.ProgressLog`), writes a checkpoint every
`checkpoint_every` steps (never during a streak of non-finite steps, so checkpoints stay
"last good") and images every `images_every` steps; after `max_nonfinite_steps` non-finite
steps in a row it restores the latest checkpoint (`Trainer.recover_from_nonfinite`), and after
`max_nonfinite_restores` such restores it stops with `TrainingError`. `finish` writes the final
checkpoint and images and returns the `TrainResult`.
"""

import dataclasses
import time

from absl import logging

from lcflow_tf import summaries


class TrainingError(RuntimeError):
  """Training cannot continue (diverged, or nothing to restore)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a finished `Trainer.train` (a `TrainingLoop`) reports.

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


class TrainingLoop:
  """Training of a `Trainer` towards `target`, in one go or in segments (`Trainer.loop`).

  `run(until_step)` trains to a step and returns, so that a protocol can act between steps
  (`lcflow_tf.pilots` fixes the split there); `run()` trains on; `finish()` writes the final
  checkpoint and images and returns the `TrainResult`. The progress log, the counters, the
  clock and the data stream span the segments: they log, checkpoint and count as one
  uninterrupted call (periodic checkpoints and images at every multiple of their period
  before `target`).

  Attributes:
    trainer: the `Trainer`.
    target: the step the loop ends at.
    start: the step it started from.
  """

  def __init__(self, trainer, target):
    c = trainer.config
    self.trainer, self.target, self.start = trainer, target, trainer.step
    if self.start >= target:
      logging.info("Step %d already reached (target %d); nothing to train.", self.start, target)
    self._progress = summaries.ProgressLog(trainer.summary_writer, c.log_every, c.batch_size,
                                           c.train_steps, trainer.flow.image_shape,
                                           trainer.num_bins)
    self._tally = _Tally()
    self._iterator = None
    self._seconds = 0.0

  def run(self, until_step=None):
    """Trains to `until_step` (default, and at most, `target`).

    Returns early when a streak of non-finite steps restored the latest checkpoint: the run
    is then back at that checkpoint's state (its step, weights and split); call `run` again
    to train on from there.

    Raises:
      TrainingError: when `max_nonfinite_restores` restores did not help.
    """
    t, c = self.trainer, self.trainer.config
    stop = self.target if until_step is None else min(until_step, self.target)
    if self._iterator is None:
      self._iterator = t.distributed_iterator()
    started = time.time()
    try:
      while t.step < stop:
        loss, norm, finite, lr = t.train_step(next(self._iterator))
        step = t.step
        self._tally.images += c.batch_size
        if not self._count(step, loss, norm, finite):  # restored a checkpoint
          self._iterator = None  # the data stream restarts at the restored step
          return
        self._progress.step(step, self.target, loss, norm, lr, finite, self._tally.nonfinite)
        if step % c.checkpoint_every == 0 and step != self.target and not self._tally.consecutive:
          t.save_checkpoint()  # never in a non-finite streak: checkpoints stay "last good"
        if step % c.images_every == 0 and step != self.target:
          t.write_images()
    finally:
      self._seconds += time.time() - started

  def _count(self, step, loss, norm, finite):
    """Counts a step; after too many non-finite ones in a row, restores the last checkpoint.

    Returns:
      False when a checkpoint was restored, else True.
    """
    t, c, tally = self.trainer, self.trainer.config, self._tally
    if finite:
      tally.consecutive = 0
      tally.losses[step], tally.bits_per_dim[step] = loss, t.bits_per_dim(loss)
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
    t.recover_from_nonfinite()
    tally.restores += 1
    tally.consecutive = 0
    return False

  def finish(self):
    """The final checkpoint and images (when the loop trained), and the `TrainResult`."""
    t, tally = self.trainer, self._tally
    if t.step != self.start or t.checkpoints.last_path is None:
      if t.checkpoints.saved_step != t.step:  # never rewrite the newest in place
        t.save_checkpoint()
      t.write_images()
    t.summary_writer.flush()
    t.checkpoints.close()
    return TrainResult(step=t.step, losses=tally.losses, bits_per_dim=tally.bits_per_dim,
                       nonfinite_steps=tally.nonfinite, restores=tally.restores,
                       images_per_sec=tally.images / max(self._seconds, 1e-9),
                       checkpoint=t.checkpoints.last_path, resumed_from=self.start)
