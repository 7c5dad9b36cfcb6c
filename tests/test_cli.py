"""train.py and eval.py as a user runs them (tiny models).

Every command line runs in a fork of a process that imported the scripts' modules and
TensorFlow once (`tests/cli_runner.py`; TensorFlow's runtime starts in each fork; the
`run_script` fixture of conftest.py); the bad-flag cases share one such process per script."""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lcflow_tf import cli
from lcflow_tf import config as config_lib
from lcflow_tf import training
from tests import cli_runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_FLAGS = ["--levels=2", "--steps_per_level=1", "--hidden_channels=8", "--batch_size=16",
              "--lc_pilot_steps=2", "--warmup_steps=2", "--log_every=2", "--checkpoint_every=2",
              "--images_every=2", "--split=lc", "--lc_pilot=static"]
# TensorFlow's C++ start-up lines (absl log format, e.g. "E0000 00:00:..." about CUDA).
_TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before)")


def user_lines(stderr):
  """stderr without TensorFlow's C++ start-up log lines."""
  return [line for line in stderr.splitlines() if line.strip() and not _TF_LOG_LINE.match(line)]


def checkpoint_value(path, name):
  return tf.train.load_checkpoint(path).get_tensor(name)


ITERATIONS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.mark.slow
def test_train_resume_then_eval(tmp_path, run_script):
  model_dir = str(tmp_path / "run")
  first = run_script("train.py", f"--model_dir={model_dir}", "--train_steps=4",
                     "--noeval_at_end", "--lr_schedule=linear", "--ema_decay=0.99", *TINY_FLAGS)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "Traceback" not in first.stderr
  assert re.search(r"step 4/4 +train [\d.]+ bits/dim +\d+ images/s +lr [\d.e+-]+ .*ETA 0:00:00",
                   first.stderr)
  assert "Pilot finished at step 2" in first.stderr
  ckpt4 = os.path.join(model_dir, "ckpt-4")
  assert checkpoint_value(ckpt4, ITERATIONS) == 4
  slot = "optimizer/_variables/1/.ATTRIBUTES/VARIABLE_VALUE"  # an Adam moment
  saved = config_lib.read_train_config(model_dir)
  assert saved.train_steps == 4 and saved.model.hidden_channels == 8 and saved.model.split == "lc"
  assert (saved.lr_schedule, saved.ema_decay) == ("linear", 0.99)

  # The optimizer state in the checkpoint is what a resumed Trainer starts from.
  trainer = training.Trainer(saved, model_dir)
  assert trainer.step == 4 and int(trainer.optimizer.iterations.numpy()) == 4
  np.testing.assert_array_equal(trainer.optimizer.variables[1].numpy(),
                                checkpoint_value(ckpt4, slot))
  assert np.any(checkpoint_value(ckpt4, slot))
  del trainer

  second = run_script("train.py", f"--model_dir={model_dir}", "--train_steps=6", *TINY_FLAGS)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Resuming from step 4" in second.stderr
  assert "step 5/6" not in second.stderr and re.search(r"step 6/6 ", second.stderr)
  assert "Pilot finished" not in second.stderr  # the split was fixed in the first run
  # Not given again, --lr_schedule and --ema_decay kept the run's values (no mismatch).
  resumed = config_lib.read_train_config(model_dir)
  assert (resumed.train_steps, resumed.lr_schedule, resumed.ema_decay) == (6, "linear", 0.99)
  with open(os.path.join(model_dir, "eval", "results.json")) as f:
    assert json.load(f)["weights"] == "ema"  # --eval_at_end evaluates the averages
  ckpt6 = os.path.join(model_dir, "ckpt-6")
  assert checkpoint_value(ckpt6, ITERATIONS) == 6  # continued, not restarted at 0
  assert not np.array_equal(checkpoint_value(ckpt6, slot), checkpoint_value(ckpt4, slot))
  assert f"{model_dir}/eval/results.json" in second.stdout
  with open(os.path.join(model_dir, "eval", "results.json")) as f:
    assert "sample_quality" not in json.load(f)  # only with --sample_quality
  tags = set()
  for name in os.listdir(f"{model_dir}/train"):
    for event in tf.compat.v1.train.summary_iterator(f"{model_dir}/train/{name}"):
      tags |= {(v.tag, v.metadata.plugin_data.plugin_name) for v in event.summary.value}
  assert {("train/bits_per_dim", "scalars"), ("train/images_per_sec", "scalars"),
          ("train/learning_rate", "scalars"), ("train/grad_norm", "scalars"),
          ("samples/temperature_0.7", "images"), ("lc/heatmaps", "images")} <= tags

  out_dir, classifier_dir = str(tmp_path / "eval"), str(tmp_path / "classifier")
  evaluated = run_script("eval.py", f"--model_dir={model_dir}", f"--output_dir={out_dir}",
                         "--dequant_samples=2", "--temperatures=0,0.7,1", "--num_samples=16",
                         "--sample_quality", "--sample_quality_samples=40",
                         "--classifier_steps=20", f"--classifier_dir={classifier_dir}",
                         "--weights=raw")
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  assert "Traceback" not in evaluated.stderr
  with open(os.path.join(out_dir, "results.json")) as f:
    results = json.load(f)
  assert results["step"] == 6 and results["checkpoint"].endswith("ckpt-6")
  assert results["weights"] == "raw"
  assert results["num_images"] == 297 and results["dequant_samples"] == 2
  # Six steps of a tiny model: better than nothing, worse than a trained model; uniform
  # over 17 levels would be log2(17) = 4.09 bits/dim.
  assert 2.0 < results["test_bits_per_dim"] < 8.0
  assert 0.0 < results["test_bits_per_dim_stderr"] < 0.5
  assert results["test_bits_per_dim_iw"] <= results["test_bits_per_dim"] + 1e-9
  assert 0.0 <= results["reconstruction_max_abs_error"] < 1e-3
  assert results["split"] == "lc" and results["split_fixed"] is True
  assert all(math.isfinite(results[k]) for k in ("test_bits_per_dim", "test_bits_per_dim_iw"))
  assert sorted(results["samples"]) == ["0", "0.7", "1"]
  for name in list(results["samples"].values()) + results["lc_heatmaps"]:
    with Image.open(os.path.join(out_dir, name)) as image:
      assert image.width >= 64 and image.height >= 64
  assert results["lc_heatmaps"] == ["lc_level0.png", "lc_overview.png"]
  assert (f"step 6 (raw weights): test bits/dim {results['test_bits_per_dim']:.4f}"
          in evaluated.stdout)

  # --sample_quality: a tiny classifier trained into --classifier_dir, distances per temperature
  quality = results["sample_quality"]
  with open(os.path.join(classifier_dir, "classifier.json")) as f:
    classifier = json.load(f)
  assert classifier["dataset"] == "digits" and classifier["config"]["steps"] == 20
  assert quality["classifier_dir"] == classifier_dir
  assert quality["classifier_test_accuracy"] == classifier["test_accuracy"] > 0.1
  assert quality["classifier_reference_distances"] == classifier["reference_distances"]
  assert quality["num_samples"] == quality["num_reference_images"] == 40
  assert sorted(quality["temperatures"]) == ["0", "0.7", "1"]
  for r in quality["temperatures"].values():
    assert r["num_used"] + r["nonfinite_excluded"] == 40
    if r["num_used"] >= 2:
      assert r["frechet_distance"] >= 0.0
  # Six training steps: the samples are further from the test images than training images.
  assert quality["temperatures"]["0.7"]["frechet_distance"] > quality[
      "reference_frechet_distance"] > 0.0
  assert results["eval_config"]["classifier"]["steps"] == 20
  assert "sample quality (Frechet distance on classifier features, 40 samples vs 40 test" in (
      evaluated.stdout)


def _other_config_dir(tmp_path):
  model_dir = tmp_path / "other"
  config_lib.write_train_config(str(model_dir), config_lib.TrainConfig(batch_size=32))
  return model_dir


BAD_TRAIN_FLAGS = [
    (["--dataset=cifar100"], r"^error: dataset must be one of \['digits', .*\], got 'cifar100'\.$"),
    (["--batch_size=0"], r"^error: batch_size must be an integer >= 1, got 0\.$"),
    (["--levels=-1"], r"^error: levels must be an integer >= 1, got -1\.$"),
    (["--learning_rate=-1"], r"^error: learning_rate must be in \(0.0, inf\], got -1.0\.$"),
    (["--levels=4"], r"^error: .*H and W must be divisible by 16; got image_shape \(8, 8, 1\)"),
    (["--split=lc", "--lc_pilot_steps=2000"],
     r"^error: lc_pilot_steps must be smaller than train_steps"),
    (["--lc_pilot=none"], r"^error: lc_pilot must be one of \['static', 'nosplit'\], got 'none'"),
    (["--budget_matched_control", "--split=lc"],
     r"^error: budget_matched_control applies to split='static' only .* got "
     r"budget_matched_control=True with split='lc'\.$"),
    (["--static_pilots", "--split=lc"],  # the flag's older name, an alias
     r"^error: budget_matched_control applies to split='static' only .* got "
     r"budget_matched_control=True with split='lc'\.$"),
    (["--cpu_replicas=2", "--batch_size=15"],
     r"^error: batch_size=15 is not divisible by the 2 replicas of the MirroredStrategy"),
    ("OTHER_CONFIG", r"^error: model_dir .* holds a run with a different configuration "
                     r"\(batch_size=32 there but 64 now\)"),
]


def _ids(cases):
  return [" ".join(f) if isinstance(f, list) else f for f, _ in cases]


@pytest.fixture(scope="module")
def bad_train_results(tmp_path_factory):
  """Every BAD_TRAIN_FLAGS case, run by one shared process (`cli_runner.run_many`):
  {id: (result, model_dir, config.json bytes before or None)}."""
  prepared = []
  for case_id, (flags, _) in zip(_ids(BAD_TRAIN_FLAGS), BAD_TRAIN_FLAGS):
    tmp_path = tmp_path_factory.mktemp("bad_train")
    if flags == "OTHER_CONFIG":
      model_dir = _other_config_dir(tmp_path)
      before, flags = (model_dir / "config.json").read_bytes(), []
    else:
      model_dir, before = tmp_path / "run", None
    prepared.append((case_id, model_dir, before,
                     cli_runner.command(f"--model_dir={model_dir}", *flags, timeout=120)))
  results = cli_runner.run_many("train.py", [p[3] for p in prepared], parallel=2)
  return {case_id: (result, model_dir, before)
          for (case_id, model_dir, before, _), result in zip(prepared, results)}


def _one_error_line(result, message):
  assert result.returncode != 0
  assert "Traceback" not in result.stderr
  errors = [line for line in user_lines(result.stderr) if "error" in line.lower()]
  assert len(errors) == 1, result.stderr
  assert re.search(message, errors[0]), errors[0]


@pytest.mark.parametrize("flags,message", BAD_TRAIN_FLAGS, ids=_ids(BAD_TRAIN_FLAGS))
def test_invalid_train_flags(bad_train_results, request, flags, message):
  del flags  # run by the fixture
  result, model_dir, before = bad_train_results[request.node.callspec.id]
  _one_error_line(result, message)
  if before is not None:  # the other run's directory is left exactly as it was
    assert os.listdir(model_dir) == ["config.json"]
    assert (model_dir / "config.json").read_bytes() == before
  else:
    assert not model_dir.exists()  # nothing written


BAD_EVAL_FLAGS = [
    (["--model_dir=MISSING"], r"^error: model_dir MISSING does not exist"),
    (["--temperatures=a,b"], r"^error: temperatures must be comma-separated numbers"),
]


@pytest.fixture(scope="module")
def bad_eval_results(tmp_path_factory):
  """Every BAD_EVAL_FLAGS case, run by one shared process: {id: (result, missing dir)}."""
  prepared = []
  for case_id, (flags, _) in zip(_ids(BAD_EVAL_FLAGS), BAD_EVAL_FLAGS):
    missing = tmp_path_factory.mktemp("bad_eval") / "missing"
    prepared.append((case_id, missing, cli_runner.command(
        *[f.replace("MISSING", str(missing)) for f in flags], timeout=120)))
  results = cli_runner.run_many("eval.py", [p[2] for p in prepared], parallel=2)
  return {case_id: (result, missing) for (case_id, missing, _), result in zip(prepared, results)}


@pytest.mark.parametrize("flags,message", BAD_EVAL_FLAGS, ids=_ids(BAD_EVAL_FLAGS))
def test_invalid_eval_flags(bad_eval_results, request, flags, message):
  del flags  # run by the fixture
  result, missing = bad_eval_results[request.node.callspec.id]
  _one_error_line(result, message.replace("MISSING", re.escape(str(missing))))
  assert not missing.exists()


def test_programs_start_quietly_on_a_machine_without_gpu(tmp_path):
  """As a user runs it (`python train.py`, one process): no error-level line from
  TensorFlow's CUDA probe where no NVIDIA driver is, no INFO lines from TensorFlow's own
  modules (checkpoint and SavedModel writing), and the run directory printed before training.
  """
  if os.path.exists(cli.NVIDIA_DRIVER):
    pytest.skip("an NVIDIA driver is loaded here: its CUDA probe's messages are real")
  run_dir, export_dir = tmp_path / "run", tmp_path / "export"
  proc = subprocess.run(
      [sys.executable, os.path.join(REPO, "train.py"), f"--model_dir={run_dir}",
       "--train_steps=2", "--levels=2", "--steps_per_level=1", "--hidden_channels=8",
       "--batch_size=16", "--log_every=1", "--noeval_at_end", f"--export_dir={export_dir}"],
      cwd=tmp_path, capture_output=True, text=True, timeout=300,
      env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not [line for line in proc.stderr.splitlines() if line.startswith("E")], proc.stderr
  assert "failed call to cuInit" not in proc.stderr
  assert "INFO:tensorflow" not in proc.stderr and "functional_saver.py" not in proc.stderr
  assert "step 2/2" in proc.stderr  # the program's own progress lines stay
  assert proc.stdout.splitlines()[0] == (
      f"run directory {run_dir}: checkpoints, config.json, TensorBoard events (tensorboard "
      f"--logdir {run_dir}) and, at the end, eval/")
