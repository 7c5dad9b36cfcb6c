"""lcflow_tf.pretrained: the shipped model reproduces its record; packaging, checksums, errors."""

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import lcflow_tf
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import pretrained
from lcflow_tf import training
from lcflow_tf.pretrained import packaging

SHIPPED = "fashion_mnist_glow"
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(data.FASHION_MNIST_DEBIAN_DIR),
    reason=f"no Fashion-MNIST at {data.FASHION_MNIST_DEBIAN_DIR} (apt install "
           "dataset-fashion-mnist, as .ci/run does)")


@pytest.fixture(scope="module")
def tiny_root(digits, tmp_path_factory):
  """A pretrained-model root holding `tiny`: a 4-step digits Glow, packaged."""
  model_dir = str(tmp_path_factory.mktemp("tiny_run"))
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=4,
      warmup_steps=2, log_every=2, checkpoint_every=2, images_every=100, split="static")
  training.Trainer(config, model_dir, dataset=digits).train()
  root = str(tmp_path_factory.mktemp("pretrained"))
  packaging.package(model_dir, "tiny", root, check_images=40, dequant_samples=2,
                    test_images=100, command="tiny")
  return root


def centres(num_bins, shape, seed=0):
  images = np.random.default_rng(seed).integers(0, num_bins, (3,) + tuple(shape))
  return images.astype(np.uint8), ((images + 0.5) / num_bins).astype(np.float32)


def test_shipped_model_matches_its_manifest_and_names_its_training():
  assert lcflow_tf.pretrained is pretrained and pretrained.NAMES == (SHIPPED,)
  pretrained.verify(SHIPPED)  # every file's SHA-256
  values = pretrained.manifest(SHIPPED)
  assert values["dataset"] == "fashion_mnist" and values["weights"] == "ema"
  assert values["command"].startswith("python train.py --dataset=fashion_mnist")
  assert values["test"]["num_images"] == 10000
  assert values["train_config"]["train"]["train_steps"] == values["step"]
  parts = {pretrained.part_of(f) for f in values["files"]}
  assert parts == set(pretrained.PARTS)
  assert sum(os.path.getsize(os.path.join(pretrained.directory(SHIPPED), *f.split("/")))
             for f in values["files"]) < 20e6  # a few MB in the repository


@needs_fashion_mnist
def test_shipped_model_reproduces_its_recorded_bits_per_dim():
  """The first test images' bits/dim, with the recorded dequantisation noise, to 1e-4."""
  values = pretrained.manifest(SHIPPED)
  check = values["check"]
  model = pretrained.load(SHIPPED)
  assert isinstance(model, lcflow_tf.FlowModel) and model.num_bins == 256
  images = data.load_dataset("fashion_mnist").test().take(check["num_images"])
  got = evaluation.held_out_bits_per_dim(model.flow, images, model.num_bins,
                                         check["dequant_samples"], seed=check["seed"])
  assert got["num_images"] == check["num_images"] == 500
  assert abs(got["bits_per_dim"] - check["bits_per_dim"]) < 1e-4, (got, check)
  assert values["test"]["bits_per_dim"] <= 3.3


def test_shipped_forms_compute_the_same_density():
  """The FlowModel of `load`, the .keras file and the SavedModel hold the same weights."""
  model = pretrained.load(SHIPPED)
  images, x = centres(256, (28, 28, 1))
  expected = model.flow.log_prob(x).numpy()
  from_keras = keras.models.load_model(pretrained.path(SHIPPED, "keras"))
  np.testing.assert_allclose(from_keras.flow.log_prob(x).numpy(), expected, rtol=1e-6)
  served = tf.saved_model.load(pretrained.path(SHIPPED, "saved_model"))
  out = served.signatures["log_prob"](images=tf.constant(images))["log_prob"].numpy()
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  samples = model.sample(8, temperature=1.0, seed=0).numpy()
  assert samples.shape == (8, 28, 28, 1) and np.all(np.isfinite(samples))


def test_package_writes_the_three_forms_and_a_reproducible_record(tiny_root, digits):
  values = pretrained.manifest("tiny", tiny_root)
  assert (values["step"], values["weights"], values["num_bins"]) == (4, "ema", 17)
  assert sorted(os.listdir(os.path.join(tiny_root, "tiny"))) == [
      "checkpoint", "ckpt-4.data-00000-of-00001", "ckpt-4.index", "config.json",
      "manifest.json", "saved_model", "tiny.keras"]
  names = {n for n, _ in tf.train.list_variables(os.path.join(tiny_root, "tiny", "ckpt-4"))}
  assert any(n.startswith("averages/") for n in names)  # the weights and their averages ...
  assert not any(n.startswith("optimizer/") for n in names)  # ... without the optimizer
  model = pretrained.load("tiny", root=tiny_root)
  got = evaluation.held_out_bits_per_dim(model.flow, digits.test().take(40), 17, 2, seed=0)
  assert got["bits_per_dim"] == pytest.approx(values["check"]["bits_per_dim"], abs=1e-6)
  raw = pretrained.load("tiny", weights="raw", root=tiny_root)
  images, x = centres(17, (8, 8, 1))
  assert np.abs(raw.flow.log_prob(x).numpy() - model.flow.log_prob(x).numpy()).max() > 1e-4
  from_keras = keras.models.load_model(pretrained.path("tiny", "keras", tiny_root))
  np.testing.assert_allclose(from_keras.flow.log_prob(x).numpy(),
                             model.flow.log_prob(x).numpy(), rtol=1e-6)
  served = tf.saved_model.load(pretrained.path("tiny", "saved_model", tiny_root))
  np.testing.assert_allclose(
      served.signatures["log_prob"](images=tf.constant(images))["log_prob"].numpy(),
      model.flow.log_prob(x).numpy(), rtol=1e-5)


def test_package_refuses_to_replace_and_leaves_nothing_behind_on_failure(tiny_root, tmp_path):
  run = os.path.join(tiny_root, "tiny")
  with pytest.raises(ValueError, match="exists; pass overwrite=True"):
    packaging.package(run, "tiny", tiny_root)
  with pytest.raises(ValueError, match=r"name must be ASCII letters, digits and '_', got 'a/b'"):
    packaging.package(run, "a/b", str(tmp_path))
  with pytest.raises(ValueError, match=r"check_images must be an int >= 1, got 0"):
    packaging.package(run, "x", str(tmp_path), check_images=0)
  with pytest.raises(ValueError, match=r"test_images must be an int >= 1, got 0"):
    packaging.package(run, "x", str(tmp_path), test_images=0)
  with pytest.raises(ValueError, match="has no config.json"):
    packaging.package(str(tmp_path), "x", str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out" / "x")


def test_package_failing_midway_leaves_no_directory(tiny_root, tmp_path, monkeypatch):
  def full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(packaging.keras_model.FlowModel, "save", full_disk)
  with pytest.raises(OSError, match="No space left"):
    packaging.package(os.path.join(tiny_root, "tiny"), "x", str(tmp_path / "out"),
                      check_images=4, test_images=4)
  assert os.listdir(tmp_path / "out") == []  # neither x nor a staging directory


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"tiny.keras is corrupted \(SHA-256 [0-9a-f]{16}\.\.\. where the manifest "
                 r"records [0-9a-f]{16}\.\.\.\); reinstall lcflow-tf"),
    ("remove", r"pretrained model 'tiny' is incomplete: .*tiny.keras is missing"),
])
def test_a_damaged_file_is_named_before_anything_reads_it(tiny_root, tmp_path, damage, message):
  root = str(tmp_path / "root")
  shutil.copytree(tiny_root, root)
  keras_file = os.path.join(root, "tiny", "tiny.keras")
  if damage == "truncate":
    with open(keras_file, "r+b") as f:
      f.truncate(os.path.getsize(keras_file) // 2)
  else:
    os.remove(keras_file)
  with pytest.raises(ValueError, match=message):
    pretrained.path("tiny", "keras", root)
  with pytest.raises(ValueError, match=message):
    pretrained.verify("tiny", root=root)
  pretrained.load("tiny", root=root)  # the run's own files are intact


def test_unknown_names_parts_and_a_broken_manifest_are_clear_errors(tiny_root, tmp_path):
  with pytest.raises(ValueError, match=r"unknown pretrained model 'mnist'; available: "
                                       r"fashion_mnist_glow\."):
    pretrained.load("mnist")
  with pytest.raises(ValueError, match=r"part must be one of run, saved_model, keras, got 'h5'"):
    pretrained.path("tiny", "h5", tiny_root)
  with pytest.raises(ValueError, match=r"weights must be one of"):
    pretrained.load("tiny", weights="best", root=tiny_root)
  root = str(tmp_path / "root")
  shutil.copytree(tiny_root, root)
  manifest = os.path.join(root, "tiny", "manifest.json")
  values = pretrained.manifest("tiny", root)
  del values["files"]["tiny.keras"]
  with open(manifest, "w") as f:
    json.dump(values, f)
  with pytest.raises(ValueError, match=r"its manifest lists no tiny.keras \(the keras form\)"):
    pretrained.path("tiny", "keras", root)
  pretrained.verify("tiny", "run", root)  # a single part, by name
  with pytest.raises(ValueError, match=r"pretrained models root .*nowhere is not a readable "
                                       r"directory"):
    pretrained.load("tiny", root=str(tmp_path / "nowhere"))
  with open(manifest, "w") as f:
    f.write("{not json")
  with pytest.raises(ValueError, match=r"pretrained model 'tiny': cannot read .*manifest.json "
                                       r"\(Expecting property name"):
    pretrained.load("tiny", root=root)
  os.remove(manifest)  # without a manifest, a directory is no pretrained model
  with pytest.raises(ValueError, match=r"unknown pretrained model 'tiny'; available: \."):
    pretrained.load("tiny", root=root)


@pytest.mark.slow
def test_eval_writes_a_pretrained_models_results_outside_the_package(tmp_path, run_script):
  evaluated = run_script("eval.py", f"--pretrained={SHIPPED}", "--dequant_samples=1",
                         "--num_samples=4", "--temperatures=0.7", "--reconstruction_images=16",
                         cwd=str(tmp_path))
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert "results: pretrained_eval/fashion_mnist_glow/results.json" in evaluated.stdout
  assert (tmp_path / "pretrained_eval" / SHIPPED / "samples_t0.70.png").exists()
  assert "eval" not in os.listdir(pretrained.directory(SHIPPED))


@pytest.mark.slow
def test_export_takes_a_pretrained_model(tmp_path, run_script):
  """export.py --pretrained: the shipped model's run, verified, exported as its SavedModel."""
  out = tmp_path / "export"
  exported = run_script("export.py", f"--pretrained={SHIPPED}", f"--export_dir={out}")
  assert exported.returncode == 0, exported.stderr[-3000:]
  step = pretrained.manifest(SHIPPED)["step"]
  assert f"exported step {step} ({pretrained.directory(SHIPPED)}/ckpt-{step}" in exported.stdout
  images, _ = centres(256, (28, 28, 1))
  np.testing.assert_allclose(
      tf.saved_model.load(str(out)).signatures["log_prob"](images=tf.constant(images))[
          "log_prob"].numpy(),
      tf.saved_model.load(pretrained.path(SHIPPED, "saved_model")).signatures["log_prob"](
          images=tf.constant(images))["log_prob"].numpy(), rtol=1e-6)


def test_eval_and_export_name_what_is_wrong_with_pretrained(tmp_path, run_script):
  for script, args, message in [
      ("eval.py", ["--pretrained=mnist"],
       "error: unknown pretrained model 'mnist'; available: fashion_mnist_glow."),
      ("eval.py", [f"--pretrained={SHIPPED}", "--model_dir=runs/x"],
       "error: give one of --model_dir (a training run) and --pretrained (a shipped model)."),
      ("eval.py", [f"--pretrained={SHIPPED}", "--checkpoint=x/ckpt-1"],
       "error: --checkpoint belongs to --model_dir; a pretrained model has one checkpoint."),
      ("export.py", [f"--export_dir={tmp_path / 'x'}"],
       "error: give --model_dir (export a training run), --pretrained (a shipped model) or "
       "--upgrade (re-save an older export)."),
      ("export.py", [f"--pretrained={SHIPPED}", "--checkpoint=x/ckpt-1",
                     f"--export_dir={tmp_path / 'x'}"],
       "error: --checkpoint belongs to --model_dir; a pretrained model has one checkpoint."),
      ("export.py", [f"--pretrained={SHIPPED}", "--upgrade=old", f"--export_dir={tmp_path}"],
       "error: give one of --pretrained (export a shipped model) and --upgrade (re-save an "
       "older export).")]:
    failed = run_script(script, *args)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert failed.stderr.strip().splitlines()[-1] == message
  assert not os.listdir(tmp_path)
