"""TensorBoard summaries and the progress log of the training loop.

Events are written with `tf.summary.write` in the format of TensorBoard's scalars and images
plugins (`tensorboard --logdir MODEL_DIR`; tensorboard is in requirements.txt, and the library
itself does not import it):
  * `ProgressLog`: every `log_every` steps (and at the last one) a progress line (step, train
    bits/dim, images/s, learning rate, gradient norm, ETA) and the scalars `train/loss_nats`,
    `train/bits_per_dim`, `train/learning_rate`, `train/grad_norm`, `train/images_per_sec`,
    `train/nonfinite_steps`, each the mean over the steps since the last line;
  * `write_images`: sample grids at `TEMPERATURES` (`samples/temperature_T`) and the LC
    heatmaps (`lc/heatmaps`, when the flow has junctions and statistics);
  * `write_evaluation`: an evaluation's numbers (`lcflow_tf.evaluation`) at the evaluated
    checkpoint's step, in the evaluation's directory (`MODEL_DIR/eval` by default, a run
    of its own beside `train` in TensorBoard): `test/bits_per_dim`, `test/bits_per_dim_iw`,
    `test/reconstruction_max_abs_error` and, with sample quality, `test/frechet_distance_tT`.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from lcflow_tf import flows
from lcflow_tf import viz

TEMPERATURES = (0.0, 0.7, 1.0)
SAMPLES = 36


def _metadata(plugin):
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = plugin
  return metadata


# results.json key -> TensorBoard tag of `write_evaluation`.
EVALUATION_SCALARS = {"test_bits_per_dim": "test/bits_per_dim",
                      "test_bits_per_dim_iw": "test/bits_per_dim_iw",
                      "reconstruction_max_abs_error": "test/reconstruction_max_abs_error"}


def scalar(name, value, step):
  """A scalar event readable by TensorBoard's scalars dashboard."""
  return tf.summary.write(name, tf.constant(float(value), tf.float32), step=step,
                          metadata=_metadata("scalars"))


def image(name, pixels, step):
  """One uint8 image [H, W, C] as an event of TensorBoard's images dashboard (PNG)."""
  pixels = np.asarray(pixels, np.uint8)
  encoded = tf.io.encode_png(pixels)
  tensor = tf.stack([tf.as_string(pixels.shape[1]), tf.as_string(pixels.shape[0]), encoded])
  return tf.summary.write(name, tensor, step=step, metadata=_metadata("images"))


def write_images(writer, flow, num_bins, step):
  """Sample grids of `flow` at `TEMPERATURES` (seeded by `step`) and its LC heatmaps."""
  with writer.as_default():
    for t in TEMPERATURES:
      grid = viz.sample_grid(flow, num_bins, t, SAMPLES, seed=step)
      image(f"samples/temperature_{t:.1f}", grid, step)
    if flow.junctions and flow.lc_statistics.has_data():
      image("lc/heatmaps", viz.lc_overview(flow), step)
  writer.flush()


def format_duration(seconds):
  """`H:MM:SS` of a number of seconds."""
  seconds = int(round(seconds))
  h, rest = divmod(seconds, 3600)
  m, s = divmod(rest, 60)
  return f"{h:d}:{m:02d}:{s:02d}"


@dataclasses.dataclass
class ProgressLog:
  """The progress line and scalar summaries of the training loop (see the module docstring).

  Attributes:
    writer: the summary writer of the scalars.
    every: steps between lines (`log_every`).
    batch_size: images per step.
    train_steps: the run's total (shown as `step s/train_steps`).
    image_shape: the shape of the images, for bits/dim.
    num_bins: the integer levels of the images, for bits/dim.
  """
  writer: tf.summary.SummaryWriter
  every: int
  batch_size: int
  train_steps: int
  image_shape: tuple
  num_bins: int

  def __post_init__(self):
    self._restart(time.time())

  def _restart(self, now):
    self._t, self._steps, self._losses, self._norms = now, 0, [], []

  def bits_per_dim(self, loss):
    """Training bits/dim of a loss in nats per image."""
    return float(flows.log_prob_to_bits_per_dim(-loss, self.image_shape, self.num_bins))

  def step(self, step, target, loss, norm, lr, finite, nonfinite_total):
    """Records one step (a non-finite one counts for the rate only); logs when it is time."""
    self._steps += 1
    if finite:
      self._losses.append(loss)
      self._norms.append(norm)
    if step % self.every and step != target:
      return
    now = time.time()
    rate = self._steps * self.batch_size / max(now - self._t, 1e-9)
    mean_loss = float(np.mean(self._losses)) if self._losses else float("nan")
    mean_norm = float(np.mean(self._norms)) if self._norms else float("nan")
    eta = (target - step) * self.batch_size / max(rate, 1e-9)
    bpd = self.bits_per_dim(mean_loss)
    logging.info("step %d/%d  train %.4f bits/dim  %.0f images/s  lr %.2e  grad norm %.3g"
                 "  ETA %s%s", step, self.train_steps, bpd, rate, lr, mean_norm,
                 format_duration(eta),
                 f"  ({nonfinite_total} non-finite skipped)" if nonfinite_total else "")
    with self.writer.as_default():
      for name, value in (("train/loss_nats", mean_loss), ("train/bits_per_dim", bpd),
                          ("train/learning_rate", lr), ("train/grad_norm", mean_norm),
                          ("train/images_per_sec", rate),
                          ("train/nonfinite_steps", nonfinite_total)):
        scalar(name, value, step)
    self._restart(now)


def write_evaluation(logdir, results, step):
  """Writes an evaluation's numbers (`results`, as in results.json) as scalars in `logdir`.

  Args:
    logdir: the event directory (e.g. `MODEL_DIR/eval`).
    results: the evaluation's dict (`evaluation.evaluate`).
    step: the evaluated checkpoint's step.
  """
  writer = tf.summary.create_file_writer(logdir)
  with writer.as_default():
    for key, tag in EVALUATION_SCALARS.items():
      if results.get(key) is not None:
        scalar(tag, results[key], step)
    quality = results.get("sample_quality") or {}
    for t, row in quality.get("temperatures", {}).items():
      if row.get("frechet_distance") is not None:
        scalar(f"test/frechet_distance_t{t}", row["frechet_distance"], step)
  writer.close()
