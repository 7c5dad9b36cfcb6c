"""Learning-rate schedules: a linear warm-up, then constant or a decay to a floor.

`WarmupDecay` is the one schedule of the library (`lcflow_tf.training`) and of the benchmarks
(`benchmarks/common/harness.py`-driven scripts). With `s` the optimizer's step (its `iterations`,
counting applied updates from 0) and `t` the progress step (by default `s`; the training loop
passes its global step, so the decay ends at `train_steps` whatever the pilot re-initialisation
or skipped non-finite steps did to `iterations`):

    lr = peak * warm(s) * decay(t) * scale
    warm(s)  = min(1, (s + 1) / max(warmup_steps, 1))
    p(t)     = clip((t - warmup_steps) / max(decay_steps - warmup_steps, 1), 0, 1)
    decay(t) = 1                                         (constant)
             = r + (1 - r) * (1 + cos(pi * p)) / 2        (cosine)
             = r + (1 - r) * (1 - p)                      (linear)

where `r = min_ratio` is the floor as a fraction of the peak, reached at `t = decay_steps`,
and `scale` an optional variable (the training loop lowers it when it recovers from
non-finite steps).
"""

import math

import keras
import tensorflow as tf

from lcflow_tf import checks

SCHEDULES = ("constant", "cosine", "linear")
# The default of `TrainConfig.lr_schedule` and train.py's --lr_schedule (changed here only).
DEFAULT_SCHEDULE = "cosine"
DEFAULT_MIN_RATIO = 0.01


@keras.saving.register_keras_serializable(package="lcflow_tf")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up, then constant, cosine or linear decay to `min_ratio * peak` (see module).

  Args:
    peak: the learning rate after the warm-up (> 0).
    warmup_steps: steps of the linear warm-up (>= 0; 0 and 1 both start at the peak).
    kind: `constant`, `cosine` or `linear`.
    decay_steps: the progress step at which the floor is reached (an integer >
      `warmup_steps` for the decaying kinds; ignored by `constant`).
    min_ratio: the floor as a fraction of the peak, in [0, 1).
    scale: optional scalar variable multiplying the rate.
    progress: optional scalar (integer) variable that drives the decay instead of the step
      passed by the optimizer.

  Serialisable for Keras (`get_config`; registered as `lcflow_tf>WarmupDecay`), so an
  optimizer using it saves with a `.keras` model; `scale` and `progress` are variables of the
  training loop that uses them and are not part of the configuration.

  Raises:
    ValueError: naming the argument, for a value outside the ranges above.
  """

  def __init__(self, peak, warmup_steps, kind="constant", decay_steps=None,
               min_ratio=DEFAULT_MIN_RATIO, scale=None, progress=None):
    super().__init__()
    caller = "WarmupDecay"
    checks.check_number("peak", peak, 0, caller=caller)
    checks.check_int("warmup_steps", warmup_steps, 0, caller=caller)
    checks.check_choice("kind", kind, SCHEDULES, caller=caller)
    if kind != "constant":
      checks.check_int("decay_steps", decay_steps, 1, caller=f"{caller} (kind {kind!r})")
    checks.check_number("min_ratio", min_ratio, 0, 1, low_open=False, high_open=True,
                        caller=caller)
    self.peak = float(peak)
    self.warmup_steps = warmup_steps
    self.kind = kind
    self.decay_steps = decay_steps
    self.min_ratio = float(min_ratio)
    self.scale = scale
    self.progress = progress

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = tf.minimum(1.0, (step + 1.0) / float(max(self.warmup_steps, 1)))
    rate = self.peak * warm
    if self.kind != "constant":
      t = step if self.progress is None else tf.cast(self.progress, tf.float32)
      span = float(max(self.decay_steps - self.warmup_steps, 1))
      p = tf.clip_by_value((t - float(self.warmup_steps)) / span, 0.0, 1.0)
      if self.kind == "cosine":
        fraction = 0.5 * (1.0 + tf.cos(math.pi * p))
      else:
        fraction = 1.0 - p
      rate = rate * (self.min_ratio + (1.0 - self.min_ratio) * fraction)
    if self.scale is not None:
      rate = rate * tf.cast(self.scale, tf.float32)
    return rate

  def get_config(self):
    return {"peak": self.peak, "warmup_steps": self.warmup_steps, "kind": self.kind,
            "decay_steps": self.decay_steps, "min_ratio": self.min_ratio}
