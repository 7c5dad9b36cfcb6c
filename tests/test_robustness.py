"""Finite samples and exact round trips after real training (issue 13, section 2)."""

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import flows
from lcflow_tf import training

TEMPERATURES = (0.5, 0.7, 0.85, 1.0)


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
  """A small Glow trained for 300 steps on digits with the default (bounded) couplings."""
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=2, hidden_channels=32, split="static", train_steps=300,
      warmup_steps=50, log_every=100, checkpoint_every=300, images_every=10 ** 6)
  model_dir = str(tmp_path_factory.mktemp("robust"))
  trainer = training.Trainer(config, model_dir, dataset=digits)
  trainer.train()
  return trainer, model_dir


@pytest.mark.slow
def test_samples_round_trips_and_bits_per_dim_stay_finite(trained, digits):
  trainer, _ = trained
  flow = trainer.flow
  decode = tf.function(flow.decode)
  for t in TEMPERATURES:
    z = tf.random.stateless_normal((2000,) + flow.image_shape, seed=[3, 1]) * t
    x = decode(z).numpy()
    assert np.all(np.isfinite(x)), f"temperature {t}: {np.sum(~np.isfinite(x))} non-finite"
  x = next(iter(data.make_eval_pipeline(digits.test(), 1000, digits.num_bins, 1234)))
  x_back = flow.decode(flow.encode(x)).numpy()
  np.testing.assert_allclose(x_back, x.numpy(), atol=1e-3, rtol=0)
  np.testing.assert_array_equal(np.floor(x_back * digits.num_bins),
                                np.floor(x.numpy() * digits.num_bins))
  per_image = evaluation.held_out_bits_per_dim(flow, digits.test(), digits.num_bins,
                                               dequant_samples=1)["per_image"]
  assert per_image.max() < 3 * np.median(per_image), (per_image.max(), np.median(per_image))


@pytest.mark.slow
def test_bounds_are_what_keeps_extreme_latents_finite(trained):
  """The same trained weights without the soft bounds overflow on far-out latents.

  The default `tanh` scale is bounded by construction; what can be taken away are the soft
  bounds on the couplings' shifts and the split priors' log-sigmas, and without them the
  tanh-scaled model overflows too.
  """
  trainer, model_dir = trained
  z = tf.random.stateless_normal((64,) + trainer.flow.image_shape, seed=[4, 1]) * 100.0
  assert np.all(np.isfinite(trainer.flow.decode(z).numpy()))
  cfg = trainer.flow.config
  assert cfg.resolved_scale_fn == "tanh"
  unbounded = flows.Flow(flows.FlowConfig(**{**cfg.__dict__, "max_shift": 0,
                                             "max_log_sigma": 0}))
  tf.train.Checkpoint(flow=unbounded).restore(
      tf.train.latest_checkpoint(model_dir)).expect_partial()
  assert unbounded.is_initialized()
  assert not np.all(np.isfinite(unbounded.decode(z).numpy()))


@pytest.mark.slow
def test_robustness_benchmark_counts_bin_centre_round_trips(trained, digits):
  """benchmarks/numerics/robustness.py's round-trip columns on the trained model: nothing lost."""
  from benchmarks.numerics import robustness  # pylint: disable=g-import-not-at-top
  trainer, _ = trained
  stats = robustness.round_trip_stats(trainer.flow, digits.test(), digits.num_bins, 1e-3)
  assert stats["round trip images"] == digits.num_test
  assert stats["round trip max error"] < 1e-3
  assert (stats["round trips > max_error"], stats["round trips losing a pixel"],
          stats["round trips non-finite"]) == (0, 0, 0), stats


@pytest.mark.slow
def test_robustness_float64_copy_scores_the_same_images(trained, digits):
  """The float64 re-scoring of outliers: same weights, same noise, same bits/dim here."""
  from benchmarks.numerics import robustness  # pylint: disable=g-import-not-at-top
  from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top
  trainer, _ = trained
  per_image = evaluation.held_out_bits_per_dim(trainer.flow, digits.test(), digits.num_bins,
                                               dequant_samples=1,
                                               seed=ablation.EVAL_SEED)["per_image"]
  indices = [3, 0, 17]
  in_float64 = robustness.float64_bits_per_dim(trainer.flow, digits.test(), digits.num_bins,
                                               indices)
  assert in_float64.dtype == np.float64
  np.testing.assert_allclose(in_float64, per_image[indices], atol=1e-4)


@pytest.mark.slow
def test_float64_copy_round_trips_exactly(trained, digits):
  """Flow.astype("float64") of the trained model: round trips exact to float64's precision."""
  from benchmarks.numerics import robustness  # pylint: disable=g-import-not-at-top
  trainer, _ = trained
  stats = robustness.round_trip_stats(trainer.flow.astype("float64"), digits.test(),
                                      digits.num_bins, 1e-3)
  assert stats["round trip images"] == digits.num_test
  assert stats["round trip max error"] < 1e-9, stats
  assert (stats["round trips > max_error"], stats["round trips losing a pixel"],
          stats["round trips non-finite"]) == (0, 0, 0), stats
