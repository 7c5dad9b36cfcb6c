"""Writes a training run as a pretrained-model directory that `lcflow_tf.pretrained` loads.

  python -m lcflow_tf.pretrained.packaging --model_dir=runs/fashion_mnist_glow \
      --name=fashion_mnist_glow --command="python train.py ..."

writes `lcflow_tf/pretrained/NAME/` (or `--root/NAME`), whole or not at all: `config.json`
and the checkpoint of the run's latest (or `--checkpoint`) step without the optimizer (the
trained weights, their averages and the step), the SavedModel and the `.keras` file of the
averaged weights, and `manifest.json` with every file's SHA-256, the training command and
configuration, and the averaged weights' test bits/dim on all test images and on the first
`--check_images` (what the package's test reproduces). An existing directory is replaced only
with `--overwrite`.
"""

import json
import os
import platform
import re
import shutil
import sys

import tensorflow as tf

from lcflow_tf import averaging
from lcflow_tf import checkpoints
from lcflow_tf import config as config_lib
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import files
from lcflow_tf import keras_model
from lcflow_tf import pretrained


def _bits_per_dim(flow, images, num_bins, dequant_samples, seed):
  """The held-out bits/dim record of `images` (without the per-image values)."""
  result = evaluation.held_out_bits_per_dim(flow, images, num_bins, dequant_samples, seed=seed)
  return {k: v for k, v in result.items() if k != "per_image"} | {"seed": seed}


def _write_run(loaded, model_dir, staging):
  """Copies config.json and writes the checkpoint (weights, averages, step; no optimizer)."""
  shutil.copyfile(os.path.join(model_dir, config_lib.CONFIG_FILE),
                  os.path.join(staging, config_lib.CONFIG_FILE))
  state = {"flow": loaded.flow, "step": tf.Variable(loaded.step, dtype=tf.int64)}
  if loaded.train_config.ema_decay > 0 and checkpoints.has_averages(loaded.checkpoint):
    average = averaging.WeightAverage(loaded.flow.trainable_variables,
                                      loaded.train_config.ema_decay)
    checkpoints.restore(tf.train.Checkpoint(**{averaging.CHECKPOINT_NAME: average.state}),
                        loaded.checkpoint)
    state[averaging.CHECKPOINT_NAME] = average.state
  tf.train.CheckpointManager(tf.train.Checkpoint(**state), staging, max_to_keep=1).save(
      checkpoint_number=loaded.step)


def _record(run, name, command, staging):
  """The manifest's description of the model in `staging` (`run`: its averaged weights)."""
  return {
      "name": name,
      "dataset": run.train_config.dataset,
      "image_shape": list(run.image_shape),
      "num_bins": run.num_bins,
      "step": run.step,
      "weights": run.weights,
      "command": command,
      "train_config": _read_json(os.path.join(staging, config_lib.CONFIG_FILE)),
      "written": {"machine": platform.machine(), "tensorflow": tf.__version__,
                  "python": platform.python_version()},
  }


def _read_json(path):
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _file_checksums(base):
  """{path relative to `base` with "/" separators: SHA-256} of every file under `base`."""
  sums = {}
  for folder, _, names in os.walk(base):
    for file_name in names:
      full = os.path.join(folder, file_name)
      relative = os.path.relpath(full, base).replace(os.sep, "/")
      if relative != pretrained.MANIFEST:
        sums[relative] = pretrained.sha256(full)
  return sums


def package(model_dir, name, root=None, checkpoint=None, check_images=500, dequant_samples=4,
            seed=0, test_images=None, command=None, overwrite=False):
  """Writes the run `model_dir` as the pretrained model `root/name` (see the module docstring).

  Args:
    model_dir: the training run.
    name: the model's name (a directory name: letters, digits, `_`).
    root: where the model directory goes (default: the `lcflow_tf.pretrained` package).
    checkpoint: the checkpoint prefix (default: the latest of `model_dir`).
    check_images: how many of the first test images the recorded check covers.
    dequant_samples: K, dequantisation noise samples per test image, for both records.
    seed: the dequantisation seed of both records.
    test_images: how many test images the headline record covers (None: all).
    command: the training command, recorded in the manifest.
    overwrite: replace an existing model directory.

  Returns:
    The model directory written.

  Raises:
    ValueError: for a bad name or count, an existing directory without `overwrite`, or a run
      that cannot be loaded.
    OSError: when the directory cannot be written (nothing is left behind).
  """
  if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
    raise ValueError(f"name must be ASCII letters, digits and '_', got {name!r}.")
  for what, value in (("check_images", check_images), ("dequant_samples", dequant_samples),
                      ("test_images", 1 if test_images is None else test_images)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{what} must be an int >= 1, got {value!r}.")
  root = pretrained.ROOT if root is None else os.path.abspath(root)
  target = os.path.join(root, name)
  if os.path.exists(target) and not overwrite:
    raise ValueError(f"{target} exists; pass overwrite=True (--overwrite) to replace it.")
  raw = evaluation.load_run(model_dir, checkpoint, weights="raw")
  dataset = raw.dataset

  def save(staging):
    _write_run(raw, model_dir, staging)
    run = evaluation.load_run(staging, dataset=dataset, weights="ema")  # what was written
    export.export_saved_model(run.flow, os.path.join(staging, pretrained.SAVED_MODEL_DIR),
                              run.num_bins)
    keras_model.FlowModel(run.flow, run.num_bins, name=name).save(
        os.path.join(staging, name + ".keras"))
    test = dataset.test() if test_images is None else dataset.test().take(test_images)
    values = _record(run, name, command, staging)
    values["test"] = _bits_per_dim(run.flow, test, run.num_bins, dequant_samples, seed)
    values["check"] = _bits_per_dim(run.flow, dataset.test().take(check_images), run.num_bins,
                                    dequant_samples, seed)
    values["files"] = _file_checksums(staging)
    files.write_json_atomic(os.path.join(staging, pretrained.MANIFEST), values)

  files.replace_dir_atomically(target, save)
  return target


def main(argv=None):
  """The command line of the module docstring; errors end with `error: ...` and status 1."""
  import argparse  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model_dir", required=True, help="the training run")
  parser.add_argument("--name", required=True, help="the pretrained model's name")
  parser.add_argument("--root", default=None, help="default: the lcflow_tf.pretrained package")
  parser.add_argument("--checkpoint", default=None, help="default: the run's latest")
  parser.add_argument("--check_images", type=int, default=500)
  parser.add_argument("--dequant_samples", type=int, default=4)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--test_images", type=int, default=None, help="default: all")
  parser.add_argument("--command", default=None, help="the training command, for the record")
  parser.add_argument("--overwrite", action="store_true")
  args = parser.parse_args(argv)
  try:
    target = package(args.model_dir, args.name, args.root, args.checkpoint, args.check_images,
                     args.dequant_samples, args.seed, args.test_images, args.command,
                     args.overwrite)
  except (ValueError, OSError) as e:  # OSError: e.g. a read-only site-packages
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    sys.exit(1)
  with open(os.path.join(target, pretrained.MANIFEST), encoding="utf-8") as f:
    values = json.load(f)
  print(f"wrote {target}: step {values['step']}, test bits/dim "
        f"{values['test']['bits_per_dim']:.4f} ({values['test']['num_images']} images), "
        f"first {args.check_images}: "
        f"{values['check']['bits_per_dim']:.6f}")


if __name__ == "__main__":
  main()
