"""Benchmark plumbing that needs TensorFlow: training steps and learning-rate schedules.

The worker-process plumbing (`Worker`, `serve`, `run_worker`, `peak_rss_mb`,
`current_rss_mb`) lives in `benchmarks.procs`, which does not import TensorFlow; it is
re-exported here for the scripts that import it from this module.
"""

import keras
import tensorflow as tf

# pylint: disable-next=unused-import
from benchmarks.procs import (Worker, current_rss_mb, peak_rss_mb, run_worker,
                              serve)


def nll_train_step(flow, optimizer, jit_compile=False):
  """A `tf.function` training step: one `optimizer` update on the batch's mean -log p(x)."""
  variables = flow.trainable_variables

  @tf.function(jit_compile=jit_compile)
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  return train_step


class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
  """`rate * min(1, (step + 1) / warmup_steps)`: linear warm-up, then constant."""

  def __init__(self, rate, warmup_steps):
    if not rate > 0:
      raise ValueError(f"LinearWarmup: rate must be > 0, got {rate!r}.")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 1:
      raise ValueError(f"LinearWarmup: warmup_steps must be an int >= 1, got {warmup_steps!r}.")
    self.rate = rate
    self.warmup_steps = warmup_steps

  def __call__(self, step):
    step = keras.ops.cast(step, "float32")
    return self.rate * keras.ops.minimum(1.0, (step + 1.0) / self.warmup_steps)

  def get_config(self):
    return {"rate": self.rate, "warmup_steps": self.warmup_steps}
