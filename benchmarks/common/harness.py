"""Benchmark plumbing that needs TensorFlow: training steps.

The worker-process plumbing (`Worker`, `serve`, `run_worker`, `peak_rss_mb`,
`current_rss_mb`) lives in `benchmarks.procs`, which does not import TensorFlow; it is
re-exported here for the scripts that import it from this module. Learning-rate schedules
are the library's (`lcflow_tf.schedules.WarmupDecay`).
"""

import tensorflow as tf

# pylint: disable-next=unused-import
from benchmarks.common.procs import (Worker, current_rss_mb, peak_rss_mb, run_worker,
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
