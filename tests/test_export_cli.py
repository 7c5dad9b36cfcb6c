"""export.py and train.py --export_dir/--export_version: a tiny run exported as a SavedModel."""

import os

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import averaging
from lcflow_tf import evaluation

TINY_FLAGS = ["--levels=2", "--steps_per_level=1", "--hidden_channels=8", "--batch_size=16",
              "--lc_pilot_steps=2", "--warmup_steps=2", "--log_every=2", "--checkpoint_every=2",
              "--images_every=100", "--train_steps=4", "--noeval_at_end", "--split=lc"]


@pytest.mark.slow
def test_train_exports_at_the_end_and_export_py_exports_a_checkpoint(tmp_path, run_script):
  model_dir, base, later = tmp_path / "run", tmp_path / "at_end", tmp_path / "exported"
  at_end = base / "5"  # TensorFlow Serving's layout: model base path / version
  trained = run_script("train.py", f"--model_dir={model_dir}", f"--export_dir={base}",
                       "--export_version=5", *TINY_FLAGS)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert "Traceback" not in trained.stderr
  assert f"SavedModel (step 4): {at_end}" in trained.stdout
  assert os.listdir(base) == ["5"]

  later.mkdir()  # an older export there: replaced with --overwrite
  (later / "old.txt").write_text("old")
  exported = run_script("export.py", f"--model_dir={model_dir}", f"--export_dir={later}",
                        f"--checkpoint={model_dir}/ckpt-2", "--overwrite", "--weights=raw")
  assert exported.returncode == 0, exported.stderr[-3000:]
  assert "Traceback" not in exported.stderr
  assert f"exported step 2 ({model_dir}/ckpt-2, computing in float32) to {later}" in (
      exported.stdout)
  assert sorted(os.listdir(tmp_path)) == ["at_end", "exported", "run"]  # no staging leftovers
  assert not (later / "old.txt").exists() and (later / "saved_model.pb").exists()

  # The signatures compute the library's log-density at the bin centres: train.py's export
  # with the weight averages swapped into the flow, export.py --weights=raw with the raw
  # weights of ckpt-2.
  images = np.stack([np.arange(64).reshape(8, 8, 1) % 17,
                     np.full((8, 8, 1), 16), np.zeros((8, 8, 1))]).astype(np.uint8)
  centres = (images.astype(np.float32) + 0.5) / 17.0
  raw = evaluation.load_run(str(model_dir), weights="raw")
  average = averaging.WeightAverage(raw.flow.trainable_variables, 0.999)
  tf.train.Checkpoint(averages=average.state).restore(raw.checkpoint).expect_partial()
  assert average.num_updates == 2  # the averages restarted when the pilot ended at step 2
  with average.swapped():
    averaged = raw.flow.log_prob(centres).numpy()
  assert np.abs(averaged - raw.flow.log_prob(centres).numpy()).max() > 1e-3
  np.testing.assert_allclose(
      evaluation.load_run(str(model_dir)).flow.log_prob(centres).numpy(), averaged, rtol=1e-6)
  ckpt2 = evaluation.load_run(str(model_dir), f"{model_dir}/ckpt-2", weights="raw")
  for path, library in ((at_end, averaged), (later, ckpt2.flow.log_prob(centres).numpy())):
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["log_prob"](images=tf.constant(images))
    np.testing.assert_allclose(out["log_prob"].numpy(), library, rtol=1e-5)
    dims = 64
    np.testing.assert_allclose(out["bits_per_dim"].numpy(),
                               -(library - dims * np.log(17)) / (dims * np.log(2)), rtol=1e-5)
  # The two exports hold different checkpoints.
  assert not np.allclose(
      tf.saved_model.load(str(at_end)).signatures["log_prob"](
          images=tf.constant(images))["log_prob"].numpy(),
      tf.saved_model.load(str(later)).signatures["log_prob"](
          images=tf.constant(images))["log_prob"].numpy())



@pytest.mark.slow
def test_export_in_float64_keeps_the_signatures_and_round_trips(tmp_path, run_script):
  """export.py --precision=float64: a float64 copy of the model behind the same signatures."""
  model_dir = tmp_path / "run"
  trained = run_script("train.py", f"--model_dir={model_dir}", *TINY_FLAGS)
  assert trained.returncode == 0, trained.stderr[-3000:]
  paths = {p: tmp_path / p for p in ("float32", "float64")}
  for precision, path in paths.items():
    exported = run_script("export.py", f"--model_dir={model_dir}", f"--export_dir={path}",
                          f"--precision={precision}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert f"computing in {precision}) to {path}" in exported.stdout
  images = (np.arange(3 * 64).reshape(3, 8, 8, 1) % 17).astype(np.uint8)
  loaded = {p: tf.saved_model.load(str(path)) for p, path in paths.items()}
  outs = {p: m.signatures["log_prob"](images=tf.constant(images)) for p, m in loaded.items()}
  assert outs["float64"]["log_prob"].dtype == tf.float32  # the interface is unchanged
  np.testing.assert_allclose(outs["float64"]["log_prob"].numpy(),
                             outs["float32"]["log_prob"].numpy(), rtol=1e-5)
  model = loaded["float64"]
  latent = model.signatures["encode"](images=tf.constant(images))["latent"]
  assert latent.dtype == tf.float32
  np.testing.assert_array_equal(model.signatures["decode"](latent=latent)["images"].numpy(),
                                images)
  library = evaluation.load_run(str(model_dir)).flow.astype("float64")
  np.testing.assert_allclose(outs["float64"]["log_prob"].numpy(),
                             library.log_prob((images + 0.5) / 17.0).numpy(), rtol=1e-6)
