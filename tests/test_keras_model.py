"""FlowModel: a flow trained, checkpointed, saved, loaded, resumed and exported with Keras."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import lcflow_tf as lf
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import keras_model
from lcflow_tf import lc
from lcflow_tf import schedules
from lcflow_tf import training
from tests import test_export

TINY = lf.FlowConfig(image_shape=(8, 8, 1), levels=2, steps_per_level=1, hidden_channels=8)
BINS = 17


def make_model(config=TINY, learning_rate=1e-3, **kwargs):
  model = lf.FlowModel(config, num_bins=BINS, **kwargs)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate))
  return model


def images(digits, n=64, start=0):
  """`n` uint8 digits from the training split."""
  return np.stack(list(digits.train().skip(start).take(n).as_numpy_iterator()))


def values(variables):
  return [np.array(v.numpy()) for v in variables]


def max_diff(a, b):
  return max(float(np.abs(np.float64(x) - np.float64(y)).max()) for x, y in zip(a, b))


# --- what Keras sees ---------------------------------------------------------------------------
def test_keras_sees_every_variable_and_fit_moves_every_trainable_one(digits):
  model = make_model()
  flow = model.flow
  assert [id(v) for v in model.trainable_weights] == [id(v) for v in flow.trainable_variables]
  names = [v.name for v in model.non_trainable_weights]
  assert sum("actnorm/initialized" in n for n in names) == 2
  assert any("split_perm/indices" in n for n in names)
  assert any("lc_statistics/mean_lc_0" in n for n in names) and "split_fixed" in names[-1]
  assert len(model.weights) == len(model.trainable_weights) + len(model.non_trainable_weights)
  before = values(model.trainable_weights)
  x = images(digits, 64)
  model.fit(x, batch_size=32, epochs=1, verbose=0)
  assert flow.is_initialized()
  unmoved = [v.name for v, b in zip(model.trainable_weights, before)
             if np.array_equal(v.numpy(), b)]
  assert not unmoved, f"variables that fit did not move: {unmoved}"


def test_actnorm_is_initialised_on_the_first_batch_of_fit(digits):
  x = images(digits, 48)
  model = make_model()
  reference = lf.FlowModel(TINY, num_bins=BINS)
  reference.initialize(x[:16])
  model.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False, steps_per_epoch=1)
  fitted_init = [v.numpy() for a in model.flow.actnorms for v in (a.loc,)]
  reference_init = [a.loc.numpy() for a in reference.flow.actnorms]
  # the first ActNorm's loc moved by one Adam step (<= learning rate) from its initial value
  np.testing.assert_allclose(fitted_init[0], reference_init[0], atol=2e-3)


# --- one engine ---------------------------------------------------------------------------------
def trainer_and_model(digits, tmp_path, steps=20, **model_kwargs):
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=steps,
      warmup_steps=5, split="static", log_every=100, checkpoint_every=100, images_every=100,
      shuffle_buffer=256)
  trainer = training.Trainer(config, str(tmp_path / "trainer"), dataset=digits)
  training.seed_initializers(config.seed)  # the Trainer's initial weights
  model = lf.FlowModel(config.flow_config(digits.image_shape), num_bins=digits.num_bins,
                       grad_clip_norm=config.grad_clip_norm, **model_kwargs)
  model.compile(optimizer=keras.optimizers.Adam(schedules.WarmupDecay(
      config.learning_rate, config.warmup_steps, kind=config.lr_schedule,
      decay_steps=config.train_steps, min_ratio=config.lr_min_ratio)))
  stream = keras_model.train_stream(digits, config.batch_size, config.stream_seed,
                                    shuffle_buffer=config.shuffle_buffer)
  return trainer, model, stream


def test_fit_follows_the_trainer_step_for_step(digits, tmp_path):
  """Same batches, same recipe: FlowModel.fit and Trainer give the same losses (1e-4)."""
  trainer, model, stream = trainer_and_model(digits, tmp_path)
  result = trainer.train()
  history = model.fit(stream, steps_per_epoch=1, epochs=20, verbose=0).history
  np.testing.assert_allclose(history["loss"], [result.losses[k] for k in range(1, 21)],
                             rtol=1e-4)
  np.testing.assert_allclose(history["bits_per_dim"],
                             [result.bits_per_dim[k] for k in range(1, 21)], rtol=1e-4)
  assert max_diff(values(model.trainable_weights), values(trainer.flow.trainable_variables)) < 1e-4


def test_mirrored_two_replicas_follow_one_device(digits, two_cpus):
  """uint8 batches dequantised inside: 2 replicas get the noise and losses of one device."""
  x = images(digits, 128)

  def run(strategy):
    with strategy.scope():
      keras.utils.set_random_seed(0)
      model = make_model(split_orders=())
    history = model.fit(x, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    return model, history["loss"]

  one, one_losses = run(tf.distribute.get_strategy())
  two, two_losses = run(two_cpus)
  assert two.distribute_strategy.num_replicas_in_sync == 2
  np.testing.assert_allclose(two_losses, one_losses, rtol=1e-4)
  assert max_diff(values(two.trainable_weights), values(one.trainable_weights)) < 1e-4
  stats_one, stats_two = one.flow.lc_statistics, two.flow.lc_statistics
  assert float(stats_one.count.numpy()) == float(stats_two.count.numpy()) == 128 * 2
  np.testing.assert_allclose(stats_two.mean_lc[0].numpy(), stats_one.mean_lc[0].numpy(),
                             rtol=1e-4, atol=1e-4)


def test_nonfinite_steps_are_skipped(digits):
  model = make_model(validate_args=False)
  x = images(digits, 32).astype(np.float32) / BINS
  model.initialize(x)
  before = values(model.weights)
  bad = x.copy()
  bad[0, 0, 0, 0] = np.nan
  model.fit(bad, batch_size=32, epochs=1, verbose=0)
  assert max_diff(values(model.weights), before) == 0.0
  assert int(model.optimizer.iterations.numpy()) == 0


# --- save, load, checkpoints, resume ------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(digits):
  keras.utils.set_random_seed(1)
  model = make_model(dataclasses.replace(TINY, split="lc"))
  model.fit(images(digits, 64), batch_size=32, epochs=2, verbose=0,
            callbacks=[lf.SplitPilot(2)])
  return model


def test_split_pilot_fixes_the_split_from_the_pilot_statistics(trained):
  flow = trained.flow
  assert bool(flow.split_fixed.numpy())
  assert float(flow.lc_statistics.count.numpy()) == 2 * 32  # the pilot's steps only
  expected = lc.split_order(flow.lc_statistics, 0, "lc")
  np.testing.assert_array_equal(flow.junctions[0].permutation.indices.numpy(), expected)
  assert not np.array_equal(expected, lc.split_order(flow.lc_statistics, 0, "static"))


def assert_same_model(a, b, x):
  np.testing.assert_array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
  np.testing.assert_array_equal(a.sample(4, 0.7, seed=3), b.sample(4, 0.7, seed=3))
  assert max_diff(values(a.weights), values(b.weights)) == 0.0


def test_keras_file_and_weights_round_trip(trained, digits, tmp_path):
  x = images(digits, 16, start=100)
  trained.save(tmp_path / "m.keras")
  loaded = keras.models.load_model(tmp_path / "m.keras")
  assert isinstance(loaded, lf.FlowModel) and loaded.flow.config == trained.flow.config
  assert_same_model(trained, loaded, x)
  assert int(loaded.optimizer.iterations.numpy()) == int(trained.optimizer.iterations.numpy())
  np.testing.assert_array_equal(  # the split is in the config too
      np.array(loaded.get_config()["split_orders"][0]),
      trained.flow.junctions[0].permutation.indices.numpy())
  unfitted = lf.FlowModel.from_config(json.loads(json.dumps(trained.get_config())))
  np.testing.assert_array_equal(unfitted.flow.junctions[0].permutation.indices.numpy(),
                                trained.flow.junctions[0].permutation.indices.numpy())
  trained.save_weights(tmp_path / "m.weights.h5")
  fresh = make_model(dataclasses.replace(TINY, split="lc"))
  fresh.load_weights(tmp_path / "m.weights.h5")
  assert_same_model(trained, fresh, x)
  assert max_diff(values(fresh.optimizer.variables), values(trained.optimizer.variables)) == 0


def test_weights_of_another_configuration_are_refused(trained, tmp_path):
  trained.save_weights(tmp_path / "m.weights.h5")
  other = make_model(dataclasses.replace(TINY, split="lc", steps_per_level=2))
  with pytest.raises(ValueError, match="flow variables"):
    other.load_weights(tmp_path / "m.weights.h5")


class _Interrupt(keras.callbacks.Callback):
  def __init__(self, at):
    super().__init__()
    self.at = at

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self.at:
      raise RuntimeError("interrupted")


def test_backup_and_restore_resumes_a_fit_killed_part_way(digits, tmp_path):
  """Killed in epoch 2 of 3, the rerun resumes from epoch 1's backup and ends where an
  uninterrupted fit ends (the dequantisation noise follows the restored optimizer step)."""
  x = images(digits, 128)

  def fresh():
    keras.utils.set_random_seed(2)
    return make_model()

  straight = fresh()
  straight.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0)
  backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
  model = fresh()
  with pytest.raises(RuntimeError, match="interrupted"):
    model.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0,
              callbacks=[backup, _Interrupt(7)])
  resumed = fresh()
  resumed.fit(x, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[backup])
  assert int(resumed.optimizer.iterations.numpy()) == 12
  assert max_diff(values(resumed.weights), values(straight.weights)) == 0.0


def test_model_checkpoint_early_stopping_and_tensorboard(digits, tmp_path):
  train, test = images(digits, 64), np.stack(list(digits.test().take(64).as_numpy_iterator()))
  model = make_model()
  callbacks = [
      keras.callbacks.ModelCheckpoint(str(tmp_path / "best.keras"), monitor="val_bits_per_dim",
                                      mode="min", save_best_only=True),
      keras.callbacks.ModelCheckpoint(str(tmp_path / "w-{epoch}.weights.h5"),
                                      save_weights_only=True),
      keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", patience=0, mode="min",
                                    min_delta=100.0),
      keras.callbacks.TensorBoard(str(tmp_path / "tb")),
  ]
  history = model.fit(train, batch_size=32, epochs=5, validation_data=(test,), verbose=0,
                      callbacks=callbacks).history
  assert len(history["val_bits_per_dim"]) == 2  # stopped: no improvement by 100 bits/dim
  loaded = keras.models.load_model(tmp_path / "best.keras")
  np.testing.assert_allclose(loaded.evaluate(test, verbose=0, return_dict=True)["bits_per_dim"],
                             history["val_bits_per_dim"][-1], rtol=1e-5)
  assert sorted(os.listdir(tmp_path)) == ["best.keras", "tb", "w-1.weights.h5", "w-2.weights.h5"]
  assert any("events" in f for _, _, files in os.walk(tmp_path / "tb") for f in files)


def test_optimizer_weight_average_ends_fit_with_the_averages(digits):
  """Keras' `use_ema`: the weights after fit are the exponential average of the raw ones."""
  x = images(digits, 96)
  raw = []
  record = keras.callbacks.LambdaCallback(
      on_train_batch_end=lambda batch, logs: raw.append(values(model.trainable_weights)))
  keras.utils.set_random_seed(3)
  model = lf.FlowModel(TINY, num_bins=BINS)
  model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.5))
  model.fit(x, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[record])
  average = raw[0]
  for step in raw[1:]:
    average = [0.5 * a + 0.5 * w for a, w in zip(average, step)]
  assert max_diff(values(model.trainable_weights), average) < 1e-6
  assert max_diff(values(model.trainable_weights), raw[-1]) > 1e-5


# --- LC pilots, export, inputs ------------------------------------------------------------------
def test_nosplit_pilots_then_the_final_model(digits):
  config = dataclasses.replace(TINY, levels=3, split="logdet")
  x = images(digits, 64)
  orders = []
  for junction in range(config.levels - 1):
    pilot = lf.FlowModel.pilot(config, junction, BINS, split_orders=orders)
    pilot.compile(optimizer=keras.optimizers.Adam(1e-3))
    pilot.fit(x, batch_size=32, epochs=1, verbose=0)
    assert isinstance(pilot.flow.junctions[junction], lf.bijectors.OpenJunction)
    orders.append(pilot.split_order(junction, "logdet"))
  model = make_model(config, split_orders=orders)
  assert bool(model.flow.split_fixed.numpy())
  for junction, order in zip(model.flow.junctions, orders):
    np.testing.assert_array_equal(junction.permutation.indices.numpy(), order)
  model.fit(x, batch_size=32, epochs=1, verbose=0)
  assert float(model.flow.lc_statistics.count.numpy()) == 0  # fixed: nothing collected


def test_a_pilot_model_keeps_its_open_junctions_through_its_config():
  config = dataclasses.replace(TINY, levels=3, split="logdet")
  pilot = lf.FlowModel.pilot(config, 1, BINS)
  saved = json.loads(json.dumps(pilot.get_config()))
  assert saved["open_junctions_from"] == 1 and saved["flow"]["split"] == "static"

  def kinds(model):
    return [type(j).__name__ for j in model.flow.junctions]

  assert kinds(pilot) == kinds(lf.FlowModel.from_config(saved)) == ["FactorOut", "OpenJunction"]
  older = dict(saved, flow=dict(saved["flow"], pilot_junction=1))  # as older versions saved it
  del older["open_junctions_from"]
  assert kinds(lf.FlowModel.from_config(older)) == ["FactorOut", "OpenJunction"]
  model = lf.FlowModel.from_config(dict(older, flow=dict(older["flow"], pilot_junction=None)))
  assert kinds(model) == ["FactorOut", "FactorOut"]
  assert lf.FlowModel(pilot.flow, BINS).flow is pilot.flow
  with pytest.raises(ValueError, match=r"open_junctions_from=0 differs from the given Flow's"):
    lf.FlowModel(pilot.flow, BINS, open_junctions_from=0)


def test_export_gives_the_serving_signatures_to_both_loaders(trained, digits, tmp_path):
  x = images(digits, 8, start=200)
  path = trained.export(str(tmp_path / "export"), version=1)
  assert path == str(tmp_path / "export" / "1")
  expected = trained.predict(x, verbose=0)
  loaded = tf.saved_model.load(path)
  served = loaded.signatures["log_prob"](images=tf.constant(x))["log_prob"].numpy()
  np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-4)
  (session,) = test_export.session_run(path, [("log_prob", x)])  # TensorFlow Serving's loader
  np.testing.assert_allclose(session["log_prob"], expected, rtol=1e-5, atol=1e-4)
  with pytest.raises(ValueError, match="tf_saved_model"):
    trained.export(str(tmp_path / "other"), format="onnx")


def test_bad_use_gets_clear_errors(digits):
  with pytest.raises(ValueError, match="num_bins must be an integer >= 2"):
    lf.FlowModel(TINY, num_bins=1)
  with pytest.raises(TypeError, match="FlowConfig or a Flow"):
    lf.FlowModel("glow", num_bins=BINS)
  model = lf.FlowModel(TINY, num_bins=BINS)
  with pytest.raises(ValueError, match="loss is -log p"):
    model.compile(optimizer="adam", loss="mse")
  model.compile(optimizer="adam")
  x = images(digits, 32)
  with pytest.raises(ValueError, match="not initialised"):
    model.evaluate(x, verbose=0)
  with pytest.raises(ValueError, match="not initialised"):
    model.predict(x, verbose=0)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"values in \[0, 17\)"):
    model.fit(x + np.uint8(BINS), batch_size=32, epochs=1, verbose=0)
  with pytest.raises(ValueError, match="initialize"):
    model.fit(iter([x]), epochs=1, verbose=0)
  floats = x.astype(np.float32) / BINS
  model.initialize(floats)
  for bad in (np.nan, np.inf, 5.0, -0.1, 1.0):
    corrupted = floats.copy()
    corrupted[3, 2, 1, 0] = bad
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"finite values in \[0, 1\)"):
      model.fit(corrupted, batch_size=32, epochs=1, verbose=0)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"finite values in \[0, 1\)"):
    model.predict(corrupted, verbose=0)
  with pytest.raises(ValueError, match="pilot_steps must be an integer >= 1"):
    lf.SplitPilot(0)


def test_jit_follows_graph_mode(digits):
  """`jit=True` (XLA on the loss and gradients) trains along the same losses (rtol 1e-4)."""
  x = images(digits, 64)
  losses = []
  for jit in (False, True):
    keras.utils.set_random_seed(0)
    model = make_model(jit=jit)
    losses.append(model.fit(x, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"])
  np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
