"""Loading and evaluating runs: a run directory is self-contained, evaluations reach TensorBoard.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.util import tensor_util

from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import training
from tests import test_bad_inputs

TINY = dict(levels=2, steps_per_level=1, hidden_channels=8, batch_size=8, train_steps=2,
            warmup_steps=1, split="static", images_every=10 ** 6, checkpoint_every=2)


def train_tiny(model_dir, **overrides):
  config = config_lib.TrainConfig.from_flags(**{**TINY, **overrides})
  training.Trainer(config, str(model_dir)).train()


def test_a_run_exports_and_samples_after_its_data_is_gone(tmp_path):
  """config.json records the image shape and the levels: export and sampling never read the
  dataset, so a copied run (or one whose data directory was removed) still exports."""
  test_bad_inputs.fashion_dir(tmp_path, num_train=16)  # tmp_path/idx: tiny IDX files
  train_tiny(tmp_path / "run", dataset="fashion_mnist", data_dir=str(tmp_path / "idx"))
  with open(tmp_path / "run" / "config.json") as f:
    assert json.load(f)["data"] == {"image_shape": [28, 28, 1], "num_bins": 256}
  shutil.rmtree(tmp_path / "idx")
  run = evaluation.load_run(str(tmp_path / "run"))
  assert run.image_shape == (28, 28, 1) and run.num_bins == 256 and run.step == 2
  assert run.flow.sample(2, seed=1).shape == (2, 28, 28, 1)
  path = export.export_saved_model(run.flow, str(tmp_path / "export"), run.num_bins)
  served = tf.saved_model.load(path).signatures["sample"](
      num=tf.constant(2), temperature=tf.constant(0.5), seed=tf.constant(3, tf.int64))
  assert served["images"].shape == (2, 28, 28, 1)
  with pytest.raises(ValueError, match=r"data_dir '.*idx' does not exist"):
    run.dataset  # pylint: disable=pointless-statement  (evaluation needs the data)


def test_a_run_without_the_data_record_is_rebuilt_from_its_dataset(digits, tmp_path):
  """config.json of runs written before the record: the dataset gives the shape, and a resume
  adds the record."""
  train_tiny(tmp_path / "run")
  path = tmp_path / "run" / "config.json"
  values = json.loads(path.read_text())
  del values["data"]
  path.write_text(json.dumps(values))
  assert config_lib.read_data_record(str(tmp_path / "run")) is None
  run = evaluation.load_run(str(tmp_path / "run"), dataset=digits)
  assert run.image_shape == (8, 8, 1) and run.num_bins == 17
  train_tiny(tmp_path / "run", train_steps=3)
  assert config_lib.read_data_record(str(tmp_path / "run")) == ((8, 8, 1), 17)


def test_evaluation_writes_its_numbers_to_tensorboard(digits, tmp_path):
  train_tiny(tmp_path / "run")
  results, _ = evaluation.evaluate_model_dir(
      str(tmp_path / "run"), config_lib.EvalConfig(dequant_samples=1, num_samples=4,
                                                   temperatures=(0.7,), reconstruction_images=8),
      dataset=digits)
  accumulator = plugin_event_accumulator.EventAccumulator(
      str(tmp_path / "run" / "eval"), size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  for tag, key in (("test/bits_per_dim", "test_bits_per_dim"),
                   ("test/bits_per_dim_iw", "test_bits_per_dim_iw"),
                   ("test/reconstruction_max_abs_error", "reconstruction_max_abs_error")):
    (event,) = accumulator.Tensors(tag)
    assert event.step == 2
    np.testing.assert_allclose(float(tensor_util.make_ndarray(event.tensor_proto)),
                               results[key], rtol=1e-6)


def test_a_model_dir_that_does_not_exist_is_named_so(tmp_path):
  missing = os.path.join(tmp_path, "no_such_run")
  with pytest.raises(ValueError, match=r"model_dir .*no_such_run does not exist"):
    evaluation.load_run(missing)


def test_a_dataset_of_another_shape_is_refused(digits, tmp_path):
  train_tiny(tmp_path / "run")
  padded = data.load_dataset("digits", pad_to=16)
  with pytest.raises(ValueError, match=r"shape \[16, 16, 1\] with 17 levels.*\[8, 8, 1\]"):
    evaluation.load_run(str(tmp_path / "run"), dataset=padded)
  assert evaluation.load_run(str(tmp_path / "run"), dataset=digits).num_bins == 17
