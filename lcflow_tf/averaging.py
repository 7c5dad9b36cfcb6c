"""Exponential moving average (Polyak averaging) of a model's trainable weights.

`WeightAverage(variables, decay)` keeps one average per variable. After each applied update
of the weights, `update()` moves every average towards its variable with a warm-started
decay (the rule of `tf.train.ExponentialMovingAverage` with `num_updates`):

    d_n = min(decay, (1 + n) / (10 + n))
    average <- d_n * average + (1 - d_n) * variable

where n counts the updates before this one (0, 1, 2, ...). The averages start at the
variables' values (`reset()`), so no bias correction is needed; early on d_n is small
(0.1, 0.18, 0.25, ...) and after n updates the average weighs the recent weights (its mean
age is about n / 10 updates) until d_n reaches `decay` (at n = (10 decay - 1) / (1 - decay):
8,990 updates for 0.999), after which it is a plain exponential average over ~1 / (1 - decay)
updates.

Only what is passed in is averaged: the training loop passes `flow.trainable_variables`, so
ActNorm's `initialized` flags, the LC statistics, the split permutations and `split_fixed`
are never averaged. `swapped()` puts the averages into the variables for evaluating,
sampling or exporting, and restores the raw weights on exit.

Checkpoints: `state` is the `tf.Module` holding the averages and the update count; track it
in the checkpoint as `averages` (`CHECKPOINT_NAME`), e.g.
`tf.train.Checkpoint(flow=flow, averages=average.state)`. The averaged variables themselves
are not tracked by `state` (they are saved with the model).

Distribution: create the `WeightAverage` inside `strategy.scope()` (the averages are then
mirrored like the weights) and call `update()` in cross-replica context: each replica's copy
of an average is updated from that replica's copy of the variable, as the optimizer updates
the weights, so the copies stay identical.
"""

import contextlib

import keras
import tensorflow as tf

from lcflow_tf import checks

# How a checkpoint names the averages (training.Trainer saves them so; evaluation reads them).
CHECKPOINT_NAME = "averages"
# Which weights an evaluation or export uses: the averages, or the raw (last) weights.
WEIGHTS = ("ema", "raw")


def _tf_variable(variable):
  """The `tf.Variable` behind a variable (Keras 3 variables wrap one in `.value`)."""
  return variable.value if isinstance(variable, keras.Variable) else variable


class WeightAverage:
  """Moving averages of `variables` (see the module docstring).

  Args:
    variables: the variables to average (e.g. `flow.trainable_variables`); tf or Keras 3
      float variables.
    decay: the decay, in [0, 1) (the warm-up rule caps it at `(1 + n) / (10 + n)`).

  Attributes:
    variables: the averaged variables (a tuple).
    decay: the decay.
    state: `tf.Module` with `values` (one average per variable, same order) and
      `num_updates` (int64), to be tracked in checkpoints.

  Raises:
    ValueError: when `decay` is outside [0, 1) or `variables` is empty.
  """

  def __init__(self, variables, decay):
    checks.check_number("decay", decay, 0, 1, low_open=False, high_open=True,
                        caller="WeightAverage")
    self.variables = tuple(variables)
    if not self.variables:
      raise ValueError("WeightAverage: variables must not be empty.")
    self.decay = float(decay)
    self.state = tf.Module(name="weight_average")
    self.state.values = [
        tf.Variable(tf.convert_to_tensor(_tf_variable(v)), trainable=False,
                    name=f"average_{i}") for i, v in enumerate(self.variables)]
    self.state.num_updates = tf.Variable(0, dtype=tf.int64, trainable=False,
                                         name="num_updates")

  @property
  def values(self):
    """The averages (tf.Variables, in the order of `variables`)."""
    return list(self.state.values)

  @property
  def num_updates(self):
    """Updates applied since the last `reset()` (a Python int)."""
    return int(self.state.num_updates.numpy())

  def current_decay(self):
    """`min(decay, (1 + n) / (10 + n))` for the next update (a float32 tensor)."""
    n = tf.cast(self.state.num_updates, tf.float32)
    return tf.minimum(tf.constant(self.decay, tf.float32), (1.0 + n) / (10.0 + n))

  def update(self):
    """Moves every average towards its variable (cross-replica context; graph or eager)."""
    strategy = tf.distribute.get_strategy()
    decay = self.current_decay()

    def move(average, value, d):
      return average.assign_sub((1.0 - tf.cast(d, average.dtype)) * (average - value))

    for average, variable in zip(self.state.values, self.variables):
      strategy.extended.update(average, move, args=(_tf_variable(variable), decay),
                               group=False)
    self.state.num_updates.assign_add(1)

  def reset(self):
    """Sets every average to its variable's current value and the update count to 0."""
    for average, variable in zip(self.state.values, self.variables):
      average.assign(tf.convert_to_tensor(_tf_variable(variable)))
    self.state.num_updates.assign(0)

  def copy_to_variables(self):
    """Assigns the averages to the variables (the raw weights are overwritten)."""
    for average, variable in zip(self.state.values, self.variables):
      variable.assign(average.read_value())

  @contextlib.contextmanager
  def swapped(self):
    """Context in which the variables hold the averages; the raw weights come back on exit.

    Eager only. Inside a distribution strategy, enter it under `strategy.scope()`.
    """
    raw = [tf.identity(tf.convert_to_tensor(_tf_variable(v))) for v in self.variables]
    self.copy_to_variables()
    try:
      yield self
    finally:
      for variable, value in zip(self.variables, raw):
        variable.assign(value)


def in_checkpoint(path, name=CHECKPOINT_NAME):
  """Whether the checkpoint at `path` holds weight averages saved under `name`.

  Raises:
    tf.errors.OpError: when the checkpoint cannot be read.
  """
  prefix = name + "/"
  return any(key.startswith(prefix) for key, _ in tf.train.list_variables(path))


def check_weights(weights):
  """Checks a `weights=` argument.

  Raises:
    ValueError: unless `weights` is one of `WEIGHTS`.
  """
  checks.check_choice("weights", weights, WEIGHTS)
