"""The learning-rate schedule (lcflow_tf/schedules.py): warm-up, then constant or a decay."""

import math

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import schedules


def rates(schedule, steps):
  return np.array([float(schedule(s)) for s in steps])


def test_constant_after_warmup_with_scale():
  scale = tf.Variable(1.0)
  schedule = schedules.WarmupDecay(1e-3, 4, scale=scale)
  np.testing.assert_allclose(rates(schedule, range(6)), [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3],
                             rtol=1e-6)
  scale.assign(0.5)
  np.testing.assert_allclose(float(schedule(10)), 5e-4, rtol=1e-6)
  # warmup_steps 0 and 1 both start at the peak
  assert float(schedules.WarmupDecay(1e-3, 0)(0)) == float(schedules.WarmupDecay(1e-3, 1)(0))


def test_constant_is_bitwise_the_old_warmup_formula():
  """The benchmarks' and old runs' schedule: peak * min(1, (s + 1) / w) (* scale)."""
  scale = tf.Variable(0.25)
  for warmup in (1, 7, 200):
    schedule = schedules.WarmupDecay(1e-3, warmup, scale=scale)
    for s in (0, 3, warmup - 1, warmup, 5000):
      step = tf.cast(s, tf.float32)
      old = 1e-3 * tf.minimum(1.0, (step + 1.0) / float(warmup)) * scale
      assert float(schedule(s)) == float(old)


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_decay_reaches_the_floor_at_decay_steps(kind):
  peak, warmup, total, ratio = 2e-3, 10, 110, 0.05
  schedule = schedules.WarmupDecay(peak, warmup, kind=kind, decay_steps=total, min_ratio=ratio)
  got = rates(schedule, [0, 9, 10, 35, 60, 85, 110, 500])
  p = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
  shape = 0.5 * (1 + np.cos(math.pi * p)) if kind == "cosine" else 1 - p
  decayed = peak * (ratio + (1 - ratio) * shape)
  np.testing.assert_allclose(got, [peak / 10, peak, *decayed, peak * ratio], rtol=1e-5)
  assert np.all(np.diff(got[1:]) <= 0)  # never rises after the warm-up


def test_progress_variable_drives_the_decay_and_step_the_warmup():
  progress = tf.Variable(0, dtype=tf.int64)
  schedule = schedules.WarmupDecay(1e-3, 4, kind="linear", decay_steps=104, min_ratio=0.0,
                                   progress=progress)
  progress.assign(54)  # halfway through the decay
  np.testing.assert_allclose(float(schedule(100)), 0.5e-3, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(1)), 0.5 * 0.5e-3, rtol=1e-6)  # warm-up restarted


@pytest.mark.parametrize("kwargs,message", [
    (dict(peak=0.0, warmup_steps=1), r"WarmupDecay: peak must be in \(0, inf\], got 0.0"),
    (dict(peak=1e-3, warmup_steps=-1), r"warmup_steps must be an integer >= 0, got -1"),
    (dict(peak=1e-3, warmup_steps=1, kind="step"), r"kind must be one of .*got 'step'"),
    (dict(peak=1e-3, warmup_steps=1, kind="cosine"),
     r"WarmupDecay \(kind 'cosine'\): decay_steps must be an integer >= 1, got None"),
    (dict(peak=1e-3, warmup_steps=1, kind="linear", decay_steps=9, min_ratio=1.0),
     r"min_ratio must be in \[0, 1\), got 1.0"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    schedules.WarmupDecay(**kwargs)
