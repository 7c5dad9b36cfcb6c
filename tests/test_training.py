"""The training library and the LC pilot protocols (`lcflow_tf.pilots`), in-process, tiny models."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.util import tensor_util

from lcflow_tf import compat
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import evaluation
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import pilots
from lcflow_tf import training

TINY = dict(levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=6,
            lc_pilot_steps=3, warmup_steps=2, log_every=2, checkpoint_every=3, images_every=100,
            shuffle_buffer=256, split="lc", lc_pilot="static")
# The nosplit protocol on 3 levels (2 junctions): 2 pilots of 3 steps, then 3 model steps.
NOSPLIT = dict(TINY, levels=3, train_steps=9, lc_pilot="nosplit", split="logdet")


def tiny(**overrides):
  return config_lib.TrainConfig.from_flags(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def straight(digits, tmp_path_factory):
  """The tiny LC run (3 pilot steps + 3), trained in one go on one device."""
  model_dir = tmp_path_factory.mktemp("straight")
  trainer = training.Trainer(tiny(), str(model_dir), dataset=digits)
  return trainer, pilots.train(trainer)


def values(variables):
  return [v.numpy().copy() for v in variables]


def permutations(flow):
  return [j.permutation.indices.numpy().copy() for j in flow.junctions]


def assert_all_close(a, b, **kwargs):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, **kwargs)


# --- distribution --------------------------------------------------------------------------
def test_mirrored_two_replicas_match_one_device(digits, straight, two_cpus, tmp_path):
  """Same global batch: 2 replicas on 2 logical CPUs follow the single-device trajectory.

  Tolerance: losses rtol 1e-4 (measured ~1e-6: only the summation order differs), LC
  statistics rtol/atol 1e-4, the permutations fixed from them exactly equal.
  """
  def state(trainer, result):
    stats = trainer.flow.lc_statistics
    return (result, [m.numpy() for m in stats.mean_lc + stats.mean_h + stats.mean_h2],
            float(stats.count.numpy()), permutations(trainer.flow),
            int(trainer.optimizer.iterations.numpy()))

  two = training.Trainer(tiny(), str(tmp_path / "two"), dataset=digits, strategy=two_cpus)
  assert two.strategy.num_replicas_in_sync == 2
  (r1, s1, n1, p1, i1), (r2, s2, n2, p2, i2) = state(*straight), state(two, pilots.train(two))
  # Weight averages: the two replicas' copies are identical; they follow the single device's
  # as closely as the weights do (measured 2026-11-30: both differ by at most 4.9e-5 after
  # these 6 Adam steps, from the all-reduce's summation order), and within atol 1e-3.
  for average in two.averages.values:
    first, second = (v.numpy() for v in average.values)
    np.testing.assert_array_equal(first, second)
  assert two.averages.num_updates == straight[0].averages.num_updates == 3

  def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(values(a), values(b)))

  weights_diff = max_diff(two.flow.trainable_variables, straight[0].flow.trainable_variables)
  assert max_diff(two.averages.values, straight[0].averages.values) <= 2 * weights_diff + 1e-6
  assert_all_close(values(two.averages.values), values(straight[0].averages.values), rtol=0,
                   atol=1e-3)
  assert sorted(r1.losses) == sorted(r2.losses) == list(range(1, 7))
  np.testing.assert_allclose([r2.losses[k] for k in range(1, 7)],
                             [r1.losses[k] for k in range(1, 7)], rtol=1e-4)
  np.testing.assert_allclose(r2.losses[1], r1.losses[1], rtol=1e-5)  # same ActNorm init
  assert n1 == n2 == 3 * 16  # statistics of the pilot's global batches only
  assert_all_close(s2, s1, rtol=1e-4, atol=1e-4)
  for a, b in zip(p1, p2):
    np.testing.assert_array_equal(a, b)
  assert i1 == i2 == 6


@pytest.mark.slow
def test_jit_matches_graph_mode(digits, straight, tmp_path):
  """--jit (XLA-compiled forward/backward) follows the same trajectory (rtol 1e-4)."""
  result = pilots.train(training.Trainer(tiny(jit=True), str(tmp_path / "jit"), dataset=digits))
  np.testing.assert_allclose([result.losses[k] for k in range(1, 7)],
                             [straight[1].losses[k] for k in range(1, 7)], rtol=1e-4)


@pytest.mark.slow
def test_jit_on_two_replicas_matches_one_device(digits, straight, two_cpus, tmp_path):
  """--jit under MirroredStrategy (each replica's loss and gradients one XLA cluster, the
  conditioners as matrix products) follows the single-device run in graph mode."""
  trainer = training.Trainer(tiny(jit=True), str(tmp_path / "jit2"), dataset=digits,
                             strategy=two_cpus)
  result = pilots.train(trainer)
  np.testing.assert_allclose([result.losses[k] for k in range(1, 7)],
                             [straight[1].losses[k] for k in range(1, 7)], rtol=1e-4)


def test_batch_not_divisible_by_replicas_is_rejected_before_writing(digits, two_cpus,
                                                                   tmp_path):
  model_dir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"batch_size=15 is not divisible by the 2 replicas"):
    training.Trainer(tiny(batch_size=15), str(model_dir), strategy=two_cpus, dataset=digits)
  assert not model_dir.exists()


def test_image_size_not_divisible_is_rejected_before_writing(digits, tmp_path):
  model_dir = tmp_path / "run"
  with pytest.raises(ValueError, match=r"divisible by 16"):
    training.Trainer(tiny(levels=4), str(model_dir), dataset=digits)
  assert not model_dir.exists()


def test_mixed_precision_refused_without_gpu(digits, tmp_path):
  if tf.config.list_logical_devices("GPU"):
    pytest.skip("a GPU is visible")
  with pytest.raises(ValueError, match=r"mixed_precision needs a GPU"):
    training.Trainer(tiny(mixed_precision=True), str(tmp_path / "run"), dataset=digits)
  assert not (tmp_path / "run").exists()


def test_mixed_precision_policy_keeps_densities_close():
  x = tf.random.stateless_uniform([8, 8, 8, 1], seed=[0, 1])
  flow = flows.build_flow((8, 8, 1), levels=2, steps_per_level=1, hidden_channels=8)
  flow.initialize(x)
  rng = np.random.default_rng(0)
  for v in flow.trainable_variables:  # non-trivial networks
    v.assign(v + 0.05 * rng.standard_normal(v.shape).astype(np.float32))
  reference = flow.log_prob(x).numpy()
  assert training.apply_mixed_precision(flow) == 6  # 2 couplings x 3 convs
  with tf.GradientTape() as tape:
    mixed = flow.log_prob(x)
  grads = tape.gradient(mixed, flow.trainable_variables)
  assert mixed.dtype == tf.float32
  np.testing.assert_allclose(mixed.numpy(), reference, rtol=2e-2)
  assert all(np.isfinite(g.numpy()).all() for g in grads)


# --- resume and checkpoints ----------------------------------------------------------------
def test_resume_continues_exactly(digits, straight, tmp_path):
  """Pilot to 3, fix the split, train to 4; a resumed run to 6 == 6 steps in one go.

  With the default recipe (cosine decay to step 6, weight averages): the weights, the Adam
  moments and the averages (with their update count) match the uninterrupted run.
  """
  straight_trainer, _ = straight
  first = training.Trainer(tiny(), str(tmp_path / "resumed"), dataset=digits)
  pilots.train(first, until_step=3)
  assert first.step == 3 and pilots.pending(first)
  weights, slots = values(first.flow.trainable_variables), values(first.optimizer.variables)
  pilots.end_static_pilot(first)  # continuing (lc_reinit=False) keeps weights and optimizer
  assert not pilots.pending(first)
  assert_all_close(values(first.flow.trainable_variables), weights, rtol=0, atol=0)
  assert_all_close(values(first.optimizer.variables), slots, rtol=0, atol=0)
  # ... and restarts the averages from the pilot weights
  assert_all_close(values(first.averages.values), weights, rtol=0, atol=0)
  assert first.averages.num_updates == 0
  assert pilots.train(first, until_step=4).step == 4  # writes ckpt-4 at the end
  resumed = training.Trainer(tiny(), str(tmp_path / "resumed"), dataset=digits)
  assert resumed.step == 4
  assert int(resumed.optimizer.iterations.numpy()) == 4
  assert_all_close(values(resumed.optimizer.variables), values(first.optimizer.variables),
                   rtol=0, atol=0)
  assert_all_close(values(resumed.averages.values), values(first.averages.values), rtol=0,
                   atol=0)
  assert resumed.averages.num_updates == 1
  result = pilots.train(resumed)
  assert result.resumed_from == 4 and result.step == 6 and sorted(result.losses) == [5, 6]
  assert_all_close(values(resumed.flow.trainable_variables),
                   values(straight_trainer.flow.trainable_variables), rtol=1e-6, atol=1e-7)
  assert_all_close(values(resumed.optimizer.variables),
                   values(straight_trainer.optimizer.variables), rtol=1e-6, atol=1e-9)
  assert resumed.averages.num_updates == straight_trainer.averages.num_updates == 3
  assert_all_close(values(resumed.averages.values), values(straight_trainer.averages.values),
                   rtol=1e-6, atol=1e-7)
  for a, b in zip(permutations(resumed.flow), permutations(straight_trainer.flow)):
    np.testing.assert_array_equal(a, b)


def test_checkpoint_holds_the_whole_state(straight):
  model_dir = straight[0].model_dir
  reader = tf.train.load_checkpoint(model_dir)
  names = set(reader.get_variable_to_shape_map())
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6
  assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 6
  assert reader.get_tensor("flow/split_fixed/.ATTRIBUTES/VARIABLE_VALUE")
  assert reader.get_tensor("flow/lc_statistics/count/.ATTRIBUTES/VARIABLE_VALUE") == 48
  assert any("permutation/indices" in n for n in names)
  assert any("initialized" in n for n in names)
  slots = [n for n in names if n.startswith("optimizer/_variables/")]
  assert len(slots) == 2 * len(straight[0].flow.trainable_variables)  # Adam's m and v
  # One average per trainable variable (ActNorm flags, permutations, LC statistics and
  # split_fixed are not trainable, hence not averaged), with its update count.
  averaged = straight[0].averages.variables
  assert averaged == straight[0].flow.trainable_variables and all(v.trainable for v in averaged)
  averages = [n for n in names if n.startswith("averages/values/")]
  assert len(averages) == len(averaged)
  assert reader.get_tensor("averages/num_updates/.ATTRIBUTES/VARIABLE_VALUE") == 3
  for i, average in enumerate(straight[0].averages.values):
    np.testing.assert_array_equal(
        reader.get_tensor(f"averages/values/{i}/.ATTRIBUTES/VARIABLE_VALUE"), average.numpy())
  # Checkpoints at the pilot's end (3) and the last step (6); no temporary files left.
  listing = os.listdir(model_dir)
  assert {"ckpt-3.index", "ckpt-6.index", "checkpoint", "config.json"} <= set(listing)
  assert not [f for f in listing if "tmp" in f.lower()]


# --- TensorBoard ---------------------------------------------------------------------------
def test_tensorboard_reads_the_training_events(straight):
  """TensorBoard's own reader (the one `tensorboard --logdir` uses) finds the scalars, with
  the logged values, and the sample / LC heatmap PNGs as its images plugin's data."""
  trainer, result = straight
  accumulator = plugin_event_accumulator.EventAccumulator(
      os.path.join(trainer.model_dir, "train"), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  scalars = set(accumulator.PluginTagToContent(scalar_metadata.PLUGIN_NAME))
  assert {"train/bits_per_dim", "train/loss_nats", "train/learning_rate", "train/grad_norm",
          "train/images_per_sec", "train/nonfinite_steps"} <= scalars
  logged = {e.step: float(tensor_util.make_ndarray(e.tensor_proto))
            for e in accumulator.Tensors("train/bits_per_dim")}
  assert sorted(logged) == [2, 4, 6]  # log_every=2: the mean over the last two steps
  for step, value in logged.items():
    np.testing.assert_allclose(
        value, np.mean([result.bits_per_dim[step - 1], result.bits_per_dim[step]]), rtol=1e-5)
  images = set(accumulator.PluginTagToContent(image_metadata.PLUGIN_NAME))
  assert images == {"samples/temperature_0.0", "samples/temperature_0.7",
                    "samples/temperature_1.0", "lc/heatmaps"}
  for tag in images:
    (event,) = accumulator.Tensors(tag)  # images_every=100: once, at the end
    assert event.step == 6
    width, height, png = tensor_util.make_ndarray(event.tensor_proto)
    decoded = tf.io.decode_png(png).numpy()
    assert decoded.shape[:2] == (int(height), int(width)) and min(decoded.shape[:2]) >= 16


# --- the pilot protocol --------------------------------------------------------------------
def test_pilot_fixes_split_from_statistics_and_counts_steps(straight):
  trainer, result = straight
  flow = trainer.flow
  assert result.step == 6 and trainer.step == 6  # the budget includes the 3 pilot steps
  assert bool(flow.split_fixed.numpy())
  assert float(flow.lc_statistics.count.numpy()) == 3 * 16  # collected during the pilot only
  for i, order in enumerate(permutations(flow)):
    expected = lc.split_permutation(flow.lc_statistics.mean_lc[i].numpy(), "lc")
    np.testing.assert_array_equal(order, expected)
    assert (order != np.arange(order.shape[-1])).any()  # not the static split
  # The kept channels really have the higher mean LC at every location.
  mean_lc = flow.lc_statistics.mean_lc[0].numpy()
  kept = lc.keep_masks(flow.junctions)[0].astype(bool)
  half = mean_lc.shape[:2] + (mean_lc.shape[-1] // 2,)
  assert (mean_lc[kept].reshape(half).min(-1) >= mean_lc[~kept].reshape(half).max(-1)).all()



@pytest.mark.slow
def test_lc_reinit_resets_weights_and_optimizer_keeps_split(digits, tmp_path):
  config = tiny(lc_reinit=True)
  trainer = training.Trainer(config, str(tmp_path / "run"), dataset=digits)
  pilots.train(trainer, until_step=3)
  flow = trainer.flow
  pilot = values(flow.trainable_variables)
  stats_before = values(flow.lc_statistics.mean_lc) + [flow.lc_statistics.count.numpy()]
  chosen = pilots.end_static_pilot(trainer)
  training.seed_initializers(config.seed)
  fresh = flows.Flow(trainer.flow_config)
  actnorm_ids = {id(v) for a in flow.actnorms for v in (a.loc, a.log_scale)}
  changed = 0
  for var, fresh_var, old in zip(flow.trainable_variables, fresh.trainable_variables, pilot):
    if id(var) in actnorm_ids:  # re-initialised from data with the fixed split
      assert not np.allclose(var.numpy(), 0.0)
      continue
    np.testing.assert_array_equal(var.numpy(), fresh_var.numpy())
    changed += not np.array_equal(var.numpy(), old)
  assert changed >= len(pilot) // 2  # the pilot's weights are really gone
  assert all(bool(a.initialized.numpy()) for a in flow.actnorms)
  for order, kept in zip(permutations(flow), chosen):
    np.testing.assert_array_equal(order, kept)
  assert_all_close(values(flow.lc_statistics.mean_lc) + [flow.lc_statistics.count.numpy()],
                   stats_before, rtol=0, atol=0)
  assert all(not np.any(v) for v in values(trainer.optimizer.variables))  # moments, iterations
  assert_all_close(values(trainer.averages.values), values(flow.trainable_variables), rtol=0,
                   atol=0)  # the averages restart from the fresh weights
  assert trainer.averages.num_updates == 0
  result = pilots.train(trainer)
  assert result.step == 6 and int(trainer.optimizer.iterations.numpy()) == 3
  assert bool(flow.split_fixed.numpy())
  for order, kept in zip(permutations(flow), chosen):
    np.testing.assert_array_equal(order, kept)


# --- the nosplit pilot protocol -------------------------------------------------------------
@pytest.fixture(scope="module")
def nosplit(digits, tmp_path_factory):
  """The tiny nosplit run (pilots of junctions 0 and 1, 3 steps each, then 3), in one go."""
  model_dir = tmp_path_factory.mktemp("nosplit")
  trainer = training.Trainer(tiny(**NOSPLIT), str(model_dir), dataset=digits)
  return trainer, pilots.train(trainer)


def test_nosplit_pilots_fix_one_junction_each_and_count_in_the_budget(nosplit):
  trainer, result = nosplit
  config = trainer.config
  assert pilots.total_steps(config) == 6
  assert result.step == 9 and sorted(result.losses) == [7, 8, 9]
  assert int(trainer.optimizer.iterations.numpy()) == 3  # the model: 9 - 2 * 3 steps
  assert bool(trainer.flow.split_fixed.numpy())
  orders = []
  for j in range(2):
    pilot = pilots.pilot_trainer(trainer, j, orders)  # restores the finished pilot
    assert pilot.step == 3 and int(pilot.optimizer.iterations.numpy()) == 3
    assert pilot.config.open_junctions_from == pilot.flow.open_junctions_from == j
    assert pilot.flow_config.split == "static"
    # Junction j and deeper factor nothing out; the deeper levels see every channel.
    kinds = [type(junction).__name__ for junction in pilot.flow.junctions]
    assert kinds == ["FactorOut"] * j + ["OpenJunction"] * (2 - j)
    shapes = [junction.event_shape for junction in pilot.flow.junctions]
    assert shapes == [[(4, 4, 4), (2, 2, 16)], [(4, 4, 4), (2, 2, 8)]][j]
    for before, order in enumerate(orders):  # the decided junctions use their fixed order
      np.testing.assert_array_equal(pilot.flow.junctions[before].permutation.indices, order)
    stats = pilot.flow.lc_statistics
    assert float(stats.count.numpy()) == 3 * 16
    order = lc.split_order(stats, j, "logdet")
    orders.append(order)
    np.testing.assert_array_equal(permutations(trainer.flow)[j], order)
    # The model keeps the statistics its order was fixed from.
    np.testing.assert_array_equal(trainer.flow.lc_statistics.mean_lc[j], stats.mean_lc[j])
    mean_a = stats.mean_log_det(j).numpy()  # the kept channels have the higher mean A
    kept = lc.keep_mask(order).astype(bool)
    half = mean_a.shape[:2] + (mean_a.shape[-1] // 2,)
    assert (mean_a[kept].reshape(half).min(-1) >= mean_a[~kept].reshape(half).max(-1)).all()
  # The model's first checkpoint (step 6) holds the fixed split, before any model step.
  reader = tf.train.load_checkpoint(os.path.join(trainer.model_dir, "ckpt-6"))
  assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6
  assert reader.get_tensor("flow/split_fixed/.ATTRIBUTES/VARIABLE_VALUE")
  assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 0


def test_nosplit_model_starts_from_fresh_weights(digits, nosplit, tmp_path):
  """After the pilots: every weight is a fresh flow's (same seed), ActNorm initialised with the
  fixed split on the batch of step 6, optimizer untouched, averages from these weights."""
  trainer = training.Trainer(tiny(**NOSPLIT), str(tmp_path / "run"), dataset=digits)
  for j in range(2):  # reuse the finished pilots of the straight run
    shutil.copytree(os.path.join(nosplit[0].model_dir, f"pilot_{j}"),
                    str(tmp_path / "run" / f"pilot_{j}"))
  assert pilots.pending(trainer)
  orders = pilots.run_nosplit_pilots(trainer)
  assert trainer.step == 6 and not pilots.pending(trainer)
  training.seed_initializers(trainer.config.seed)
  fresh = flows.Flow(trainer.flow_config)
  lc.set_split(fresh.junctions, orders)
  fresh.initialize(trainer.global_batch(6))
  assert_all_close(values(trainer.flow.trainable_variables), values(fresh.trainable_variables),
                   rtol=0, atol=0)
  assert all(not np.any(v) for v in values(trainer.optimizer.variables))
  assert_all_close(values(trainer.averages.values), values(trainer.flow.trainable_variables),
                   rtol=0, atol=0)
  for mine, straight in zip(permutations(trainer.flow), permutations(nosplit[0].flow)):
    np.testing.assert_array_equal(mine, straight)


def write_as_older_version(model_dir):
  """Rewrites `model_dir/config.json` as older versions wrote a `nosplit` pilot's sub-run: the
  junction in the model (`pilot_junction`), the control named `static_pilots`."""
  path = os.path.join(model_dir, config_lib.CONFIG_FILE)
  with open(path) as f:
    values = json.load(f)["train"]
  values["static_pilots"] = values.pop("budget_matched_control")
  values["model"]["pilot_junction"] = values.pop("open_junctions_from")
  files.write_json_atomic(path, {"train": values})


def test_nosplit_pilots_written_by_older_versions_resume(digits, nosplit, tmp_path):
  """Finished pilot sub-runs whose config.json holds `model.pilot_junction` are restored, not
  trained again, and give the same orders; their checkpoints load with open junctions."""
  for j in range(2):
    shutil.copytree(os.path.join(nosplit[0].model_dir, f"pilot_{j}"),
                    str(tmp_path / "run" / f"pilot_{j}"))
    write_as_older_version(str(tmp_path / "run" / f"pilot_{j}"))
  trainer = training.Trainer(tiny(**NOSPLIT), str(tmp_path / "run"), dataset=digits)
  saved = config_lib.read_train_config(str(tmp_path / "run" / "pilot_1"))
  assert saved == pilots.pilot_config(trainer.config, 1) and saved.open_junctions_from == 1
  orders = pilots.run_nosplit_pilots(trainer)
  for mine, theirs in zip(orders, permutations(nosplit[0].flow)):
    np.testing.assert_array_equal(mine, theirs)
  assert pilots.pilot_trainer(trainer, 1, orders[:1]).step == 3  # restored, not retrained
  pilot = evaluation.load_run(str(tmp_path / "run" / "pilot_1"), dataset=digits)
  assert pilot.flow.open_junctions_from == 1
  assert [type(j).__name__ for j in pilot.flow.junctions] == ["FactorOut", "OpenJunction"]


def test_the_trainer_leaves_an_open_split_to_the_pilots(digits, tmp_path):
  trainer = training.Trainer(tiny(), str(tmp_path / "run"), dataset=digits)
  with pytest.raises(ValueError, match=r"Trainer.train: the 'lc' split of this run is not fixed "
                     r"yet; .* lcflow_tf.pilots.train\(trainer\)"):
    trainer.train()
  assert trainer.step == 0 and pilots.pending(trainer)
  with pytest.raises(ValueError, match=r"lc_pilot_steps must be smaller than train_steps"):
    pilots.run(tiny(lc_pilot_steps=6), str(tmp_path / "bad"), dataset=digits)
  assert not (tmp_path / "bad").exists()  # refused before anything was written


@pytest.mark.slow
def test_nosplit_resumes_inside_a_pilot(digits, nosplit, tmp_path):
  """A run stopped at step 2 of pilot 0 continues there and ends as the run in one go."""
  model_dir = str(tmp_path / "run")
  first = training.Trainer(tiny(**NOSPLIT), model_dir, dataset=digits)
  assert pilots.pilot_trainer(first, 0, []).train(until_step=2).step == 2  # "crash" in pilot 0
  del first
  resumed = training.Trainer(tiny(**NOSPLIT), model_dir, dataset=digits)
  pilot = pilots.pilot_trainer(resumed, 0, [])
  assert pilot.step == 2
  result = pilots.train(resumed)
  straight_trainer, straight_result = nosplit
  assert result.step == 9 and sorted(result.losses) == [7, 8, 9]
  for mine, theirs in zip(permutations(resumed.flow), permutations(straight_trainer.flow)):
    np.testing.assert_array_equal(mine, theirs)
  np.testing.assert_allclose([result.losses[s] for s in (7, 8, 9)],
                             [straight_result.losses[s] for s in (7, 8, 9)], rtol=1e-5)
  assert_all_close(values(resumed.flow.trainable_variables),
                   values(straight_trainer.flow.trainable_variables), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_nosplit_mirrored_two_replicas_match_one_device(digits, nosplit, two_cpus, tmp_path):
  """2 replicas on 2 logical CPUs: the same orders from the same pilots, the same run."""
  two = training.Trainer(tiny(**NOSPLIT), str(tmp_path / "two"), dataset=digits,
                         strategy=two_cpus)
  result = pilots.train(two)
  straight_trainer, straight_result = nosplit
  for mine, theirs in zip(permutations(two.flow), permutations(straight_trainer.flow)):
    np.testing.assert_array_equal(mine, theirs)
  # The pilots' statistics after 3 steps: measured 2026-11-30 to differ by at most 3.9e-4
  # (the all-reduce's summation order, amplified by the pilots' Adam steps).
  stats, theirs = two.flow.lc_statistics, straight_trainer.flow.lc_statistics
  assert_all_close(values(stats.mean_lc), values(theirs.mean_lc), rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose([result.losses[s] for s in (7, 8, 9)],
                             [straight_result.losses[s] for s in (7, 8, 9)], rtol=1e-4)


def test_nosplit_config_rules():
  with pytest.raises(ValueError, match=r"lc_pilot_steps must be smaller than train_steps .*"
                     r"\(2 pilots of 3 steps\)"):
    pilots.check(tiny(**dict(NOSPLIT, train_steps=6)))
  with pytest.raises(ValueError, match=r"lc_reinit applies to lc_pilot='static' only"):
    pilots.check(tiny(**dict(NOSPLIT, lc_reinit=True)))
  with pytest.raises(ValueError, match=r"lc_pilot must be one of .*'nosplit'.*got 'none'"):
    tiny(lc_pilot="none")
  assert pilots.total_steps(tiny(**NOSPLIT)) == 6 and pilots.total_steps(tiny()) == 3
  assert pilots.total_steps(tiny(split="static", lc_pilot="nosplit")) == 0
  assert config_lib.TrainConfig().lc_pilot == "nosplit"  # the default of new runs
  pilot = pilots.pilot_config(tiny(**NOSPLIT), 1)
  assert (pilot.open_junctions_from, pilot.model.split, pilot.ema_decay) == (1, "static", 0.0)
  assert pilot.train_steps == 9  # the run's schedule; the pilot trains its first 3 steps
  pilots.check(pilot)  # a sub-run has no pilots of its own
  with pytest.raises(ValueError, match=r"open_junctions_from is set by the nosplit pilots"):
    pilots.check(dataclasses.replace(tiny(**NOSPLIT), open_junctions_from=1))
  with pytest.raises(ValueError, match=r"open_junctions_from must be an integer in 0..1, got 2"):
    flows.Flow(flows.FlowConfig(image_shape=(8, 8, 1), levels=3), open_junctions_from=2)
  with pytest.raises(ValueError, match=r"open_junctions_from must be an integer in 0..1, got 2"):
    tiny(**dict(NOSPLIT, open_junctions_from=2))
  with pytest.raises(ValueError, match=r"open_junctions_from=0 needs levels >= 2"):
    tiny(levels=1, split="static", open_junctions_from=0)


def test_runs_saved_before_lc_pilot_keep_the_static_pilot(tmp_path):
  """config.json without lc_pilot (flat, or nested) loads with the static pilot it had."""
  new = tiny(lc_pilot="static")
  nested = new.to_dict()
  del nested["lc_pilot"]
  assert config_lib.TrainConfig.from_dict(nested).lc_pilot == "static"
  flat = new.to_flags()
  del flat["lc_pilot"]
  assert config_lib.TrainConfig.from_dict(flat).lc_pilot == "static"
  # train.py resuming such a run without --lc_pilot keeps it
  given = set()
  assert compat.inherit_unset(tiny(lc_pilot="nosplit"), new, given).lc_pilot == "static"


# --- the budget-matched static control (budget_matched_control) -----------------------------
CONTROL = dict(NOSPLIT, split="static", budget_matched_control=True)


def identity_orders(flow):
  return [np.broadcast_to(np.arange(j.event_shape[-1]), j.event_shape) for j in flow.junctions]


@pytest.mark.slow
def test_budget_matched_control_runs_the_nosplit_pilots_and_fixes_the_identity(digits, nosplit,
                                                                               tmp_path):
  """The control trains the pilots a data-dependent split trains (pilot 0 is the same sub-run
  as the logdet run's), fixes the identity, and trains its model the same 3 steps from step 6
  from fresh weights."""
  trainer = training.Trainer(tiny(**CONTROL), str(tmp_path / "run"), dataset=digits)
  assert pilots.total_steps(trainer.config) == 6 and pilots.pending(trainer)
  result = pilots.train(trainer)
  assert result.step == 9 and sorted(result.losses) == [7, 8, 9]
  assert int(trainer.optimizer.iterations.numpy()) == 3
  assert bool(trainer.flow.split_fixed.numpy()) and not trainer.collects_statistics
  for order, identity in zip(permutations(trainer.flow), identity_orders(trainer.flow)):
    np.testing.assert_array_equal(order, identity)
  mine, theirs = pilots.pilot_trainer(trainer, 0, []), pilots.pilot_trainer(nosplit[0], 0, [])
  assert mine.config == theirs.config and not mine.config.budget_matched_control
  assert_all_close(values(mine.flow.lc_statistics.mean_lc),
                   values(theirs.flow.lc_statistics.mean_lc), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(trainer.flow.lc_statistics.mean_lc[0],
                                mine.flow.lc_statistics.mean_lc[0])
  saved = config_lib.check_resumable(trainer.model_dir, tiny(**CONTROL))
  assert saved.budget_matched_control and saved.uses_pilot


@pytest.mark.slow
def test_budget_matched_control_under_the_static_pilot_trains_as_plain_static(digits, tmp_path):
  """Known answer: with lc_pilot='static' (no re-initialisation) fixing the identity changes no
  weight, so the control's weights are those of plain static training; only the statistics
  stop at the pilot's end and the averages restart there."""
  plain = training.Trainer(tiny(split="static"), str(tmp_path / "plain"), dataset=digits)
  plain.train()
  control = training.Trainer(tiny(split="static", budget_matched_control=True),
                             str(tmp_path / "ctl"), dataset=digits)
  pilots.train(control)
  assert bool(control.flow.split_fixed.numpy()) and not pilots.pending(control)
  assert float(control.flow.lc_statistics.count.numpy()) == 3 * 16
  assert float(plain.flow.lc_statistics.count.numpy()) == 6 * 16
  assert control.averages.num_updates == 3 and plain.averages.num_updates == 6
  assert_all_close(values(control.flow.trainable_variables),
                   values(plain.flow.trainable_variables), rtol=1e-5, atol=1e-6)


def test_budget_matched_control_config_rules():
  with pytest.raises(ValueError, match=r"budget_matched_control applies to split='static' only "
                     r".*got budget_matched_control=True with split='lc'"):
    pilots.check(tiny(split="lc", budget_matched_control=True))
  with pytest.raises(ValueError, match=r"lc_pilot_steps must be >= 1 for split 'static'"):
    pilots.check(tiny(**dict(CONTROL, lc_pilot_steps=0)))
  with pytest.raises(ValueError, match=r"budget_matched_control must be True or False, got 1"):
    tiny(budget_matched_control=1)
  assert pilots.total_steps(tiny(**CONTROL)) == 6
  assert not pilots.pilot_config(tiny(**CONTROL), 0).budget_matched_control
  assert not config_lib.TrainConfig().budget_matched_control
  nested = tiny(**CONTROL).to_dict()
  del nested["budget_matched_control"]  # a config.json written before the field existed
  assert not config_lib.TrainConfig.from_dict(nested).budget_matched_control
  nested["static_pilots"] = True  # ... and one that named it so
  assert config_lib.TrainConfig.from_dict(nested) == tiny(**CONTROL)
  assert tiny(**dict(NOSPLIT, split="static", static_pilots=True)) == tiny(**CONTROL)  # flat
  assert tiny(split="static", budget_matched_control=True).uses_pilot
  assert not tiny(split="static").uses_pilot
  assert tiny(split="lc").uses_pilot and not tiny(split="random").uses_pilot


# --- static split, non-finite steps ---------------------------------------------------------
def test_static_split_collects_statistics_and_nonfinite_steps_are_handled(digits, tmp_path):
  config = tiny(split="static", train_steps=20, checkpoint_every=2, max_nonfinite_steps=2,
                max_nonfinite_restores=1, ema_decay=0.5)
  trainer = training.Trainer(config, str(tmp_path / "run"), dataset=digits)
  # The averages start at the initialised weights; after the update n (0, 1, ...) they are
  # d a + (1 - d) w with d = min(ema_decay, (1 + n) / (10 + n)).
  expected = values(trainer.flow.trainable_variables)
  iterator = trainer.distributed_iterator()
  for n in range(2):
    trainer.train_step(next(iterator))
    d = min(0.5, (1 + n) / (10 + n))
    expected = [d * a + (1 - d) * w for a, w in zip(expected,
                                                    values(trainer.flow.trainable_variables))]
  assert trainer.averages.num_updates == 2
  assert_all_close(values(trainer.averages.values), expected, rtol=1e-6, atol=1e-7)
  assert max(np.abs(a - w).max() for a, w in zip(
      expected, values(trainer.flow.trainable_variables))) > 1e-5  # really an average
  trainer.save_checkpoint()  # checkpoint at step 2
  # static: the identity split, statistics collected at every step (for the heatmaps)
  assert float(trainer.flow.lc_statistics.count.numpy()) == 2 * 16
  for order in permutations(trainer.flow):
    np.testing.assert_array_equal(order, np.broadcast_to(np.arange(order.shape[-1]), order.shape))

  # A non-finite step is spent but not applied (nor averaged).
  weights, slots = values(trainer.flow.trainable_variables), values(trainer.optimizer.variables)
  averages = values(trainer.averages.values)
  nan_batch = tf.fill([16, 8, 8, 1], float("nan"))
  loss, _, finite, _ = trainer.train_step(nan_batch)
  assert not finite and not np.isfinite(loss)
  assert trainer.step == 3
  assert_all_close(values(trainer.flow.trainable_variables), weights, rtol=0, atol=0)
  assert_all_close(values(trainer.optimizer.variables), slots, rtol=0, atol=0)
  assert_all_close(values(trainer.averages.values), averages, rtol=0, atol=0)
  assert trainer.averages.num_updates == 2
  assert float(trainer.flow.lc_statistics.count.numpy()) == 2 * 16

  # max_nonfinite_steps in a row: restore the checkpoint and halve the learning rate; when
  # that happened max_nonfinite_restores times already: stop with TrainingError.
  real_step = trainer.train_step
  trainer.train_step = lambda batch: real_step(nan_batch)
  for average in trainer.averages.values:  # spoilt: the restore must bring them back
    average.assign_add(tf.ones_like(average))
  with pytest.raises(training.TrainingError, match=r"diverged: 2 consecutive non-finite steps"):
    trainer.train()
  assert trainer.learning_rate_scale == pytest.approx(0.5)  # one restore, lr halved
  assert trainer.step == 4  # back at the checkpoint of step 2, then 2 more failed steps
  assert_all_close(values(trainer.flow.trainable_variables), weights, rtol=0, atol=0)
  assert_all_close(values(trainer.averages.values), averages, rtol=0, atol=0)


def test_recover_without_checkpoint_is_an_error(digits, tmp_path):
  trainer = training.Trainer(tiny(split="static"), str(tmp_path / "run"), dataset=digits)
  with pytest.raises(training.TrainingError, match=r"before the first checkpoint"):
    trainer.recover_from_nonfinite()


# --- model_dir and config ------------------------------------------------------------------
def test_model_dir_with_another_config_is_refused_untouched(digits, tmp_path):
  model_dir = tmp_path / "run"
  config_lib.write_train_config(str(model_dir), tiny(split="static"))
  before = (model_dir / "config.json").read_bytes()
  with pytest.raises(ValueError, match=r"different configuration \(split='static' there but "
                     r"'lc' now, batch_size=16 there but 8 now\)"):
    training.Trainer(tiny(batch_size=8), str(model_dir), dataset=digits)
  assert os.listdir(model_dir) == ["config.json"]
  assert (model_dir / "config.json").read_bytes() == before


@pytest.mark.slow
def test_run_saved_before_averaging_and_schedules_resumes_as_it_was_trained(digits, tmp_path):
  """A config.json without lr_schedule / lr_min_ratio / ema_decay / scale / bounds (written by
  the code before they existed) and a checkpoint without averages.

  It reads as a constant learning rate without averages, unbounded couplings and split prior
  (Glow's sigmoid scale then) and He-normal conditioners; train.py's flags, when not given,
  keep those values. Resumed with averaging turned on, the averages start from the restored
  weights and the weights follow exactly the trajectory of the uninterrupted old-style run.
  """
  old_style = tiny(split="static", lc_pilot_steps=0, train_steps=4, lr_schedule="constant",
                   ema_decay=0.0, scale_fn=None, max_log_scale=0.0, max_shift=0.0,
                   max_log_sigma=0.0, network_init="he_normal")
  reference = training.Trainer(old_style, str(tmp_path / "reference"), dataset=digits)
  assert reference.averages is None
  reference.train(until_step=2)
  model_dir = tmp_path / "old"
  shutil.copytree(tmp_path / "reference", model_dir)
  names = {n for n, _ in tf.train.list_variables(str(model_dir / "ckpt-2"))}
  assert not any(n.startswith("averages/") for n in names)  # the old checkpoint layout
  fields = old_style.to_flags()  # the flat format of config.json before 2026-12
  for name in ("lr_schedule", "lr_min_ratio", "ema_decay", "network_init",
               "scale_fn") + flows.BOUND_FIELDS:
    del fields[name]
  files.write_json_atomic(str(model_dir / "config.json"), {"train": fields})

  saved = config_lib.read_train_config(str(model_dir))
  assert (saved.lr_schedule, saved.ema_decay) == ("constant", 0.0)
  assert saved == old_style
  # train.py with the run's flags only: the new fields come from the saved run ...
  from_flags = tiny(split="static", lc_pilot_steps=0, train_steps=4)
  assert (from_flags.lr_schedule, from_flags.ema_decay) == ("cosine", 0.999)  # defaults
  assert compat.inherit_unset(from_flags, saved, given=set()) == old_style
  # ... unless given: --ema_decay may change on resume, --lr_schedule may not.
  with_ema = compat.inherit_unset(from_flags, saved, given={"ema_decay"})
  assert with_ema == dataclasses.replace(old_style, ema_decay=0.999)
  with pytest.raises(ValueError, match=r"lr_schedule='constant' there but 'cosine' now"):
    training.Trainer(compat.inherit_unset(from_flags, saved, given={"lr_schedule"}),
                     str(model_dir), dataset=digits)

  resumed = training.Trainer(with_ema, str(model_dir), dataset=digits)
  assert resumed.step == 2 and resumed.averages.num_updates == 0
  assert_all_close(values(resumed.averages.values), values(resumed.flow.trainable_variables),
                   rtol=0, atol=0)
  resumed.train()
  reference.train()
  assert resumed.averages.num_updates == 2
  assert_all_close(values(resumed.flow.trainable_variables),
                   values(reference.flow.trainable_variables), rtol=1e-6, atol=1e-7)
  assert config_lib.read_train_config(str(model_dir)).ema_decay == 0.999


def test_config_without_bounds_rebuilds_the_unbounded_model():
  """Old (flat) config.json files: Glow's sigmoid scale was unbounded, RealNVP's tanh bounded
  by 2, the conditioners He-normal initialised."""
  for architecture, scale_fn, expected in (("glow", None, (None, None, None)),
                                           ("realnvp", None, (2.0, None, None)),
                                           ("glow", "tanh", (2.0, None, None))):
    fields = tiny(architecture=architecture, scale_fn=scale_fn).to_flags()
    for name in flows.BOUND_FIELDS + ("network_init",):
      del fields[name]
    flow_config = config_lib.TrainConfig.from_dict(fields).flow_config((8, 8, 1))
    assert (flow_config.resolved_max_log_scale, flow_config.resolved_max_shift,
            flow_config.resolved_max_log_sigma) == expected
    assert flow_config.network_init == "he_normal"
  new = tiny().flow_config((8, 8, 1))  # a new run gets the default scale, bounds, initialisation
  assert new.resolved_scale_fn == "tanh"
  assert (new.resolved_max_log_scale, new.resolved_max_shift, new.resolved_max_log_sigma) == (
      flows.DEFAULT_BOUNDS["max_log_scale"]["tanh"], flows.DEFAULT_BOUNDS["max_shift"],
      flows.DEFAULT_BOUNDS["max_log_sigma"])
  assert new.network_init == "uniform"
  old = config_lib.TrainConfig.from_dict({"architecture": "glow", "levels": 1})
  assert old.flow_config((8, 8, 1)).resolved_scale_fn == "sigmoid"  # saved without: sigmoid


def test_evaluation_uses_the_averages_unless_raw_is_asked_for(digits, straight, tmp_path):
  trainer, _ = straight
  settings = config_lib.EvalConfig(dequant_samples=1, temperatures=(0.7,), num_samples=4,
                                   reconstruction_images=0)
  ema = evaluation.load_run(trainer.model_dir, dataset=digits)
  raw = evaluation.load_run(trainer.model_dir, dataset=digits, weights="raw")
  assert (ema.weights, raw.weights) == ("ema", "raw")
  assert_all_close(values(ema.flow.trainable_variables), values(trainer.averages.values),
                   rtol=0, atol=0)
  assert_all_close(values(raw.flow.trainable_variables),
                   values(trainer.flow.trainable_variables), rtol=0, atol=0)
  with trainer.averaged_weights() as which:  # the trainer's own view of the same averages
    assert which == "ema"
    assert_all_close(values(trainer.flow.trainable_variables), values(ema.flow.trainable_variables),
                     rtol=0, atol=0)
  assert_all_close(values(trainer.flow.trainable_variables), values(raw.flow.trainable_variables),
                   rtol=0, atol=0)  # raw weights back
  results = {w: evaluation.evaluate_model_dir(trainer.model_dir, settings, str(tmp_path / w),
                                              dataset=digits, weights=w)[0]
             for w in ("ema", "raw")}
  assert (results["ema"]["weights"], results["raw"]["weights"]) == ("ema", "raw")
  assert abs(results["ema"]["test_bits_per_dim"] - results["raw"]["test_bits_per_dim"]) > 1e-4


def test_model_dir_with_foreign_checkpoints_is_refused(digits, tmp_path):
  (tmp_path / "checkpoint").write_text('model_checkpoint_path: "x"\n')
  with pytest.raises(ValueError, match=r"holds checkpoints but no config.json"):
    training.Trainer(tiny(), str(tmp_path), dataset=digits)


def test_train_config_validation():
  with pytest.raises(ValueError, match=r"lc_pilot_steps must be smaller than train_steps"):
    pilots.check(tiny(lc_pilot_steps=6))
  with pytest.raises(ValueError, match=r"lc_pilot_steps must be >= 1 for split 'lc'"):
    pilots.check(tiny(lc_pilot_steps=0))
  pilots.check(tiny(split="static", lc_pilot_steps=0))  # no pilot needed
  with pytest.raises(ValueError, match=r"n_bits must be unset \(None\) for dataset 'digits'"):
    tiny(n_bits=4)
  with pytest.raises(ValueError, match=r"learning_rate must be in \(0.0, inf\], got -1"):
    tiny(learning_rate=-1.0)
  with pytest.raises(ValueError, match=r"split must be one of .*'lc'.*got 'lcc'"):
    tiny(split="lcc")
  with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got 0"):
    tiny(batch_size=0)
  config = tiny()
  assert config_lib.TrainConfig.from_dict(config.to_dict()) == config
  assert config.differences(tiny(train_steps=9, log_every=5)) == []
  assert config.differences(tiny(seed=3)) == [("seed", 0, 3)]


def test_data_seed_varies_the_stream_alone_and_seed_the_weights(digits, tmp_path):
  """`data_seed` moves the batches (order and noise) and not the initial weights; with it
  fixed, `seed` moves the weights and not the batches; None is `seed`. (The ActNorms are
  initialised from the first batch, i.e. by the data: they are left out of the weights.)"""

  def build(name, **overrides):
    trainer = training.Trainer(tiny(split="static", lc_pilot_steps=0, **overrides),
                               str(tmp_path / name), dataset=digits)
    weights = [v for v in trainer.flow.trainable_variables if "actnorm" not in v.name]
    return trainer.global_batch(3).numpy(), values(weights)

  batch, weights = build("default")
  same_batch, same_weights = build("explicit", data_seed=0)
  other_batch, kept_weights = build("data", data_seed=5)
  kept_batch, other_weights = build("weights", seed=5, data_seed=0)
  np.testing.assert_array_equal(same_batch, batch)
  assert_all_close(same_weights, weights, rtol=0, atol=0)
  assert not np.array_equal(other_batch, batch)
  assert_all_close(kept_weights, weights, rtol=0, atol=0)
  np.testing.assert_array_equal(kept_batch, batch)
  assert any(not np.array_equal(a, b) for a, b in zip(other_weights, weights))


def test_data_seed_config_rules(tmp_path):
  assert tiny().stream_seed == 0 and tiny(seed=4).stream_seed == 4
  assert tiny(seed=4, data_seed=2).stream_seed == 2
  with pytest.raises(ValueError, match=r"data_seed must be an integer >= 0, got -1"):
    tiny(data_seed=-1)
  config = tiny(data_seed=7)
  assert config_lib.TrainConfig.from_dict(config.to_dict()) == config
  assert tiny().differences(config) == [("data_seed", None, 7)]  # not resumable with another
  # a config.json written before data_seed existed loads with None (the stream of `seed`)
  saved = config.to_dict()
  del saved["data_seed"]
  assert config_lib.TrainConfig.from_dict(saved).data_seed is None


def test_train_config_holds_a_flow_config():
  """One model field list (FlowConfig, the papers' defaults), the CPU defaults stated once; the
  flat names of train.py's flags and of the config.json format before 2026-12 map onto it."""
  assert config_lib.TrainConfig().model == config_lib.CPU_FLOW_DEFAULTS
  assert (flows.FlowConfig().levels, flows.FlowConfig().hidden_channels) == (3, 512)
  config = tiny(split="static", seed=3, lc_pilot_steps=0)
  assert (config.model.levels, config.model.hidden_channels, config.model.split) == (
      2, 8, "static")
  assert config.model.seed == 3  # the run's one seed
  assert config.flow_config((8, 8, 1)) == flows.FlowConfig(
      image_shape=(8, 8, 1), levels=2, steps_per_level=1, hidden_channels=8, split="static",
      seed=3)
  nested = config.to_dict()
  assert nested["model"]["hidden_channels"] == 8 and "hidden_channels" not in nested
  flat = config.to_flags()
  assert list(flat) == list(config_lib.FLAT_FIELDS) and flat["hidden_channels"] == 8
  assert set(config_lib.FLAT_FIELDS) - set(config_lib.FLAG_FIELDS) == {"open_junctions_from"}
  assert config_lib.TrainConfig.from_dict(flat) == config  # the flat format reads as the same
  assert config_lib.TrainConfig.from_flags(**flat) == config
  direct = config_lib.TrainConfig(model=dataclasses.replace(
      config_lib.CPU_FLOW_DEFAULTS, steps_per_level=1, hidden_channels=8, split="static"),
      seed=3, lc_pilot_steps=0, **{k: TINY[k] for k in TINY if k not in config_lib.MODEL_FLAGS
                                   and k != "lc_pilot_steps"})
  assert direct == config
  with pytest.raises(ValueError, match=r"model.image_shape must be None \(the dataset sets it\)"):
    config_lib.TrainConfig(model=flows.FlowConfig(image_shape=(8, 8, 1)))
  with pytest.raises(ValueError, match=r"model.dtype must be 'float32'"):
    config_lib.TrainConfig(model=flows.FlowConfig(dtype="float64", split="static"))
  with pytest.raises(ValueError, match=r"unknown config fields \['depth'\]"):
    tiny(depth=3)
  with pytest.raises(ValueError, match=r"unknown model fields \['depth'\]"):
    config_lib.TrainConfig.from_dict(dict(nested, model=dict(nested["model"], depth=3)))


def test_make_strategy():
  assert distribute.make_strategy("default") is tf.distribute.get_strategy()
  assert distribute.make_strategy("auto").num_replicas_in_sync == 1  # no GPU, 1 CPU replica
  assert distribute.make_strategy("auto", cpu_replicas=2).num_replicas_in_sync == 2
  assert distribute.make_strategy("mirrored", cpu_replicas=2).num_replicas_in_sync == 2
  with pytest.raises(ValueError, match=r"strategy must be one of"):
    distribute.make_strategy("tpu")


# --- other data sources --------------------------------------------------------------------
def test_tfds_mnist_mock_trains(tmp_path):
  (tmp_path / "tfds").mkdir()  # an explicit data_dir must exist
  config = tiny(dataset="mnist", data_dir=str(tmp_path / "tfds"), split="static",
                train_steps=2, batch_size=8)
  with tfds.testing.mock_data(num_examples=16):
    trainer = training.Trainer(config, str(tmp_path / "run"))
    assert trainer.flow.image_shape == (28, 28, 1) and trainer.num_bins == 256
    result = trainer.train()
  assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
  assert set(result.losses) == {1, 2}


@pytest.mark.skipif(not os.path.isdir(data.FASHION_MNIST_DEBIAN_DIR),
                    reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_idx_trains(tmp_path):
  config = tiny(dataset="fashion_mnist", split="static", train_steps=2, batch_size=8,
                shuffle_buffer=64)
  trainer = training.Trainer(config, str(tmp_path / "run"))
  assert trainer.dataset.num_train == 60000 and trainer.num_bins == 256
  result = trainer.train()
  assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
  # A fresh model on 8-bit images starts near 8 bits/dim, not at a scale error.
  assert 3.0 < result.bits_per_dim[1] < 12.0


# --- compatibility with runs written by older versions (lcflow_tf.compat) ---------------------
MAIN_588BC04 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "main_588bc04")


def test_checkpoint_written_by_main_588bc04_resumes_and_evaluates_identically(digits, tmp_path):
  """A run of main just before issue 15 (flat config.json, checkpoint with weight averages):
  evaluated, and resumed for 2 steps, it gives main's numbers (tests/data/main_588bc04)."""
  expected = np.load(os.path.join(MAIN_588BC04, "expected.npz"))
  model_dir = str(tmp_path / "run")
  shutil.copytree(os.path.join(MAIN_588BC04, "run"), model_dir)
  x = (expected["images"].astype(np.float32) + 0.5) / 17
  for weights in ("ema", "raw"):
    run = evaluation.load_run(model_dir, dataset=digits, weights=weights)
    assert run.weights == weights and run.step == int(expected["step"]) == 4
    np.testing.assert_allclose(run.flow.log_prob(x).numpy(), expected[f"log_prob_{weights}"],
                               rtol=1e-6)
    np.testing.assert_allclose(run.flow.encode(x).numpy(), expected[f"encoded_{weights}"],
                               rtol=1e-6, atol=1e-6)
  saved = config_lib.read_train_config(model_dir)
  assert (saved.ema_decay, saved.lr_schedule, saved.train_steps) == (0.99, "cosine", 4)
  trainer = training.Trainer(dataclasses.replace(saved, train_steps=6), model_dir,
                             dataset=digits)
  assert trainer.step == 4 and not pilots.pending(trainer) and trainer.averages.num_updates == 2
  result = pilots.train(trainer)
  assert sorted(result.losses) == list(expected["resumed_steps"]) == [5, 6]
  np.testing.assert_allclose([result.losses[s] for s in (5, 6)], expected["resumed_losses"],
                             rtol=1e-6)
  for weights in ("ema", "raw"):
    run = evaluation.load_run(model_dir, dataset=digits, weights=weights)
    np.testing.assert_allclose(run.flow.log_prob(x).numpy(),
                               expected[f"resumed_log_prob_{weights}"], rtol=1e-6)
  # The rewritten config.json (today's format) reads back as the same run.
  assert config_lib.read_train_config(model_dir) == dataclasses.replace(saved, train_steps=6)
