"""Learning-rate schedules: a linear warm-up, then constant or a decay to a floor.

`WarmupDecay` is the one schedule of the library (`lcflow_tf.training`) and of the benchmarks
(`benchmarks/harness.py`-driven scripts). With `s` the optimizer's step (its `iterations`,
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

SCHEDULES = ("constant", "cosine", "linear")
# The default of `TrainConfig.lr_schedule` and train.py's --lr_schedule (changed here only).
DEFAULT_SCHEDULE = "cosine"
DEFAULT_MIN_RATIO = 0.01


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

  Raises:
    ValueError: naming the argument, for a value outside the ranges above.
  """

  def __init__(self, peak, warmup_steps, kind="constant", decay_steps=None,
               min_ratio=DEFAULT_MIN_RATIO, scale=None, progress=None):
    super().__init__()
    if (isinstance(peak, bool) or not isinstance(peak, (int, float)) or not math.isfinite(peak)
        or peak <= 0):
      raise ValueError(f"WarmupDecay: peak must be a finite number > 0, got {peak!r}.")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
      raise ValueError(f"WarmupDecay: warmup_steps must be an integer >= 0, got "
                       f"{warmup_steps!r}.")
    if kind not in SCHEDULES:
      raise ValueError(f"WarmupDecay: kind must be one of {list(SCHEDULES)}, got {kind!r}.")
    if kind != "constant" and (isinstance(decay_steps, bool) or not isinstance(decay_steps, int)
                               or decay_steps < 1):
      raise ValueError(f"WarmupDecay: decay_steps must be an integer >= 1 for kind {kind!r}, "
                       f"got {decay_steps!r}.")
    if (isinstance(min_ratio, bool) or not isinstance(min_ratio, (int, float))
        or not 0.0 <= min_ratio < 1.0):
      raise ValueError(f"WarmupDecay: min_ratio must be in [0, 1), got {min_ratio!r}.")
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
