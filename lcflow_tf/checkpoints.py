"""Checkpoints of a training run: saving, restoring, and one-line errors when they fail.

A run's checkpoints (`tf.train.CheckpointManager` in its `model_dir`, `ckpt-<step>`) hold the
flow (weights, ActNorm state, split permutations, LC statistics, `split_fixed`) as `flow`, the
optimizer, the global `step`, the learning-rate scale `lr_scale` and, when the run keeps weight
averages, `averages` (`lcflow_tf.averaging.CHECKPOINT_NAME`, with their update count).
`TrainingCheckpoints` saves and restores them for `lcflow_tf.training`; `restore_flow` restores
the model alone (and its averages) for `lcflow_tf.evaluation`.

Crash safety. TF writes a checkpoint's shards under `<prefix>_temp/`, merges them into
`<prefix>.index/.data-*`, and only then replaces the `checkpoint` index file atomically, so a
crash never leaves a partial checkpoint as the latest. Rewriting an existing prefix is not
atomic (the merge renames the data file over the old one, then rewrites the `.index` in
place), so the trainer must never save over the newest checkpoint: `TrainingCheckpoints`
remembers the step of its newest one (`saved_step`) for that rule. Non-chief workers
(`multi_worker`) write their checkpoints into a temporary directory that `close` removes,
never into `model_dir`.

A checkpoint without averages (written with `ema_decay=0`) restores into a run that keeps them
(`ema_decay` may change on resume): everything else is restored, and the averages restart from
its weights.

Errors: an unreadable checkpoint (corrupted, truncated) or one that does not match the model
raises `ValueError` with one line (`describe_restore_error`), never TensorFlow's dump of
unmatched objects.
"""

import os
import re
import shutil
import tempfile

import tensorflow as tf
from absl import logging

from lcflow_tf import averaging


class WriteError(RuntimeError):
  """A checkpoint could not be written (e.g. no space left); the message is one line."""


def _first_line(text):
  """TensorFlow's error text without its "{{function_node ...}}" prefix, on one line."""
  text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", str(text))
  return " ".join(text.split())[:300]


def describe_restore_error(error):
  """A short description of a failed `tf.train.Checkpoint` restore (first line, no dumps)."""
  if isinstance(error, tf.errors.OpError):
    text = error.message
  else:
    text = str(error)
  text = text.split(" Showing ")[0]  # "Found N Python objects ... Showing 10 of N: [dump]"
  first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
  if isinstance(error, (tf.errors.OpError, IndexError)):
    first = f"the files are unreadable (corrupted or truncated?): {first}"
  return first[:500]


def restore(checkpoint, path):
  """Restores `path` into `checkpoint` (every object of `checkpoint` must be in `path`).

  Values in `path` that `checkpoint` does not hold (weight averages restored into a run with
  `ema_decay=0`) are ignored.

  Raises:
    ValueError: one line, when the checkpoint files cannot be read (corrupted or truncated)
      or do not match the model.
  """
  try:
    checkpoint.restore(path).assert_existing_objects_matched().expect_partial()
  except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:
    raise ValueError(f"cannot restore checkpoint {path}: {describe_restore_error(e)}") from None


def has_averages(path):
  """Whether the checkpoint `path` holds weight averages.

  Raises:
    ValueError: one line, when the checkpoint cannot be read.
  """
  try:
    return averaging.in_checkpoint(path)
  except (tf.errors.OpError, ValueError, IndexError) as e:
    raise ValueError(f"cannot restore checkpoint {path}: {describe_restore_error(e)}") from None


def resolve(model_dir, checkpoint=None):
  """The checkpoint prefix to read: `checkpoint`, or the latest of `model_dir` when None.

  Raises:
    ValueError: when `model_dir` has no checkpoint, or `checkpoint` does not exist.
  """
  if checkpoint is None:
    checkpoint = tf.train.latest_checkpoint(model_dir)
    if checkpoint is None:
      raise ValueError(f"model_dir {model_dir} has no checkpoint yet.")
  elif not tf.io.gfile.exists(checkpoint + ".index"):
    raise ValueError(f"checkpoint {checkpoint!r} does not exist (expected {checkpoint}.index); "
                     "pass a prefix such as MODEL_DIR/ckpt-1000.")
  return checkpoint


def restore_flow(path, flow, weights="ema", ema_decay=0.0, model="the model"):
  """Restores the flow of a training checkpoint, with its averaged weights if asked for.

  Args:
    path: the checkpoint prefix.
    flow: a `Flow` built from the run's config (its variables are overwritten).
    weights: "ema": the flow gets the checkpoint's weight averages, or its raw weights (with a
      logged note) when it holds none; "raw": the trained weights.
    ema_decay: the run's `ema_decay` (the averages' decay; only recorded).
    model: how errors name the model (e.g. "the model of RUN/config.json").

  Returns:
    (the checkpoint's step, "ema" or "raw": which weights `flow` now holds).

  Raises:
    ValueError: one line, when the files are unreadable, do not match `model`, or hold an
      uninitialised model.
  """
  step = tf.Variable(0, dtype=tf.int64, trainable=False)
  average = None
  try:
    status = tf.train.Checkpoint(flow=flow, step=step).restore(path)
    status.assert_existing_objects_matched()
    if weights == "ema" and averaging.in_checkpoint(path):  # after the model matched
      average = averaging.WeightAverage(flow.trainable_variables, ema_decay)
      tf.train.Checkpoint(**{averaging.CHECKPOINT_NAME: average.state}).restore(
          path).assert_existing_objects_matched().expect_partial()
  except (AssertionError, ValueError) as e:
    raise ValueError(f"checkpoint {path} does not match {model}: "
                     f"{describe_restore_error(e)}") from None
  except (tf.errors.OpError, IndexError) as e:
    raise ValueError(f"cannot restore checkpoint {path}: {describe_restore_error(e)}") from None
  status.expect_partial()  # the optimizer is not needed here
  if not flow.is_initialized():
    raise ValueError(f"checkpoint {path} holds an uninitialised model.")
  if average is not None:
    average.copy_to_variables()
  elif weights == "ema":
    logging.info("%s holds no weight averages (trained with ema_decay=0); using its raw "
                 "weights.", path)
  return int(step.numpy()), "raw" if average is None else "ema"


class TrainingCheckpoints:
  """Saves and restores the whole state of a training run (see the module docstring).

  Args:
    model_dir: the run's directory (where the latest checkpoint is looked up).
    state: {name: trackable} of everything but the averages: `flow`, `optimizer`, `step` (the
      global step variable), `lr_scale`.
    averages: the run's `averaging.WeightAverage`, or None.
    keep: how many checkpoints to keep.
    chief: whether this process writes into `model_dir` (other workers write into a
      temporary directory, removed by `close`).

  Attributes:
    saved_step: the step of the newest checkpoint (None before the first one).
    last_path: the newest checkpoint in `model_dir` (None before the first one).
  """

  def __init__(self, model_dir, state, averages, keep, chief=True):
    self.model_dir = model_dir
    self.chief = chief
    self.write_dir = model_dir if chief else tempfile.mkdtemp(prefix="lcflow-")
    self.averages = averages
    self._step = state["step"]
    self._without_averages = tf.train.Checkpoint(**state)
    if averages is not None:
      state = dict(state, **{averaging.CHECKPOINT_NAME: averages.state})
    self._checkpoint = tf.train.Checkpoint(**state)
    self._manager = tf.train.CheckpointManager(self._checkpoint, self.write_dir,
                                               max_to_keep=keep)
    self.last_path = self.latest()
    self.saved_step = None

  def latest(self):
    """The latest checkpoint of `model_dir` (None if it has none)."""
    return tf.train.latest_checkpoint(self.model_dir)

  def restore_latest(self):
    """Restores the latest checkpoint (averages included when it holds them).

    Returns:
      Its path, or None when `model_dir` has no checkpoint (nothing is restored).

    Raises:
      ValueError: one line, when the checkpoint is unreadable or does not match the model.
    """
    path = self.latest()
    if path is None:
      return None
    if self.averages is None or has_averages(path):
      restore(self._checkpoint, path)
    else:
      restore(self._without_averages, path)
      self.averages.reset()
      logging.info("%s holds no weight averages (written with ema_decay=0); averaging starts "
                   "from its weights at step %d.", path, int(self._step.numpy()))
    self.saved_step = int(self._step.numpy())
    return path

  def save(self):
    """Writes the checkpoint of the current step; returns its path.

    The caller must not save a step that already has the newest checkpoint (`saved_step`):
    rewriting a checkpoint is not atomic.

    Raises:
      WriteError: one line naming the last intact checkpoint, when the files cannot be
        written (no space left, no permission); the half-written shards are removed and the
        checkpoints written before are untouched.
    """
    step = int(self._step.numpy())
    try:
      path = self._manager.save(checkpoint_number=step)
    except (tf.errors.OpError, OSError) as e:
      prefix = os.path.join(self.write_dir, f"ckpt-{step}")
      shutil.rmtree(prefix + "_temp", ignore_errors=True)  # TF's shards of the failed save
      reason = e.message if isinstance(e, tf.errors.OpError) else str(e)
      raise WriteError(f"cannot write the checkpoint of step {step} to {self.write_dir} "
                       f"({type(e).__name__}: {_first_line(reason)}); the last intact "
                       f"checkpoint is {self.last_path or 'none (nothing was saved yet)'}, and "
                       "rerunning the same command resumes from it once the problem is "
                       "fixed.") from None
    self.saved_step = step
    if self.chief:
      self.last_path = path
    return path

  def close(self):
    """Removes a non-chief worker's temporary checkpoint directory."""
    if not self.chief:
      shutil.rmtree(self.write_dir, ignore_errors=True)
