"""Keras callbacks of the LC split: `SplitPilot`, the `static` pilot protocol in `fit`."""

import keras

from lcflow_tf import checks
from lcflow_tf import lc
from lcflow_tf import pilots


class SplitPilot(keras.callbacks.Callback):
  """Fixes a data-dependent split after `pilot_steps` training steps (the `static` pilot).

  The LC statistics are collected by every training step while the split is not fixed; once
  the optimizer has taken `pilot_steps` steps, `FlowModel.fix_split` sets every junction's
  order from them and training continues from the pilot's weights (the `static` protocol of
  `lcflow_tf.pilots`; its statistics are shaped by the static split it trains with, see the
  `nosplit` pilots of `FlowModel.pilot` for statistics that no split has shaped). Does nothing
  once the split is fixed (e.g. after a resume) or for the `static` and `random` splits.

  Args:
    pilot_steps: optimizer steps before the split is fixed (>= 1).
    rule: the split rule (default: the model's `split`).

  Raises:
    ValueError: for `pilot_steps` < 1 or an unknown rule.
  """

  def __init__(self, pilot_steps, rule=None):
    super().__init__()
    checks.check_int("pilot_steps", pilot_steps, 1, caller="SplitPilot")
    if rule is not None:
      checks.check_choice("rule", rule, lc.DATA_DEPENDENT_SPLITS, caller="SplitPilot")
    self.pilot_steps = pilot_steps
    self.rule = rule
    self.fixed_at = None

  def on_train_batch_end(self, batch, logs=None):
    del batch, logs
    model = self.model
    step = int(model.optimizer.iterations.numpy())
    if pilots.static_pilot_ends(model.flow, step, self.pilot_steps):
      model.fix_split(self.rule)
      self.fixed_at = step
