"""Trained models shipped with the package, loaded by name and checked against their checksums.

  import lcflow_tf
  model = lcflow_tf.pretrained.load("fashion_mnist_glow")   # a FlowModel, averaged weights
  model.sample(16, temperature=0.7)

Each model is a directory of this package (`directory(name)`) holding three forms of one set
of weights and a `manifest.json`:
  * the training run (`config.json` and a checkpoint with the trained weights, their averages
    and the step, without the optimizer): `path(name)` is a `model_dir` for
    `lcflow_tf.evaluation.load_run`, from which `load` builds the `FlowModel` (on the command
    line, `lcflow-eval --pretrained=NAME` and `lcflow-export --pretrained=NAME`);
  * `saved_model/`: the SavedModel of `lcflow-export` (averaged weights), for plain TensorFlow
    and TensorFlow Serving: `path(name, "saved_model")`;
  * `NAME.keras`: the `FlowModel` for `keras.models.load_model` (averaged weights):
    `path(name, "keras")`.
The manifest records every file's SHA-256, how the model was trained, and its test bits/dim
(on all test images, and on the first few hundred with the dequantisation seed that
reproduces them). `path` and `load` verify the files they hand out against the manifest first
(`verify`): a missing, truncated or altered file, or a manifest that does not list a form's
files, raises `ValueError` naming it, never an error from inside TensorFlow.
`lcflow_tf.pretrained.packaging` writes such directories (into this package, or any `root`).
"""

import fnmatch
import hashlib
import json
import os

MANIFEST = "manifest.json"
NAMES = ("fashion_mnist_glow",)  # shipped: their manifest missing is an incomplete install
PARTS = ("run", "saved_model", "keras")
SAVED_MODEL_DIR = "saved_model"
ROOT = os.path.dirname(os.path.abspath(__file__))
_REINSTALL = "reinstall lcflow-tf (or restore the file from the repository)."
# What a manifest must list for each form (patterns; NAME: the model's name).
REQUIRED = {"run": ("config.json", "checkpoint", "ckpt-*.index", "ckpt-*.data-*"),
            "saved_model": (SAVED_MODEL_DIR + "/saved_model.pb",
                            SAVED_MODEL_DIR + "/variables/variables.index"),
            "keras": ("NAME.keras",)}


def names(root=None):
  """The models of `root` (default: this package): its directories with a manifest, and for
  the package the shipped `NAMES`.

  Raises:
    ValueError: when `root` is not a readable directory.
  """
  root = ROOT if root is None else os.path.abspath(root)
  try:
    found = {d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, MANIFEST))}
  except OSError as e:
    raise ValueError(f"pretrained models root {root} is not a readable directory "
                     f"({e.strerror}).") from None
  return tuple(sorted(found | (set(NAMES) if root == ROOT else set())))


def _check_name(name, root):
  """Raises `ValueError` unless `name` is one of `names(root)`."""
  available = names(root)
  if name not in available:
    raise ValueError(f"unknown pretrained model {name!r}; available: {', '.join(available)}.")


def directory(name, root=None):
  """The directory of the pretrained model `name` (not verified; see `path`).

  Args:
    name: one of `names(root)`.
    root: where the models are (default: this package's directory).

  Raises:
    ValueError: for an unknown `name` (the message lists the available ones).
  """
  root = ROOT if root is None else os.path.abspath(root)
  _check_name(name, root)
  return os.path.join(root, name)


def manifest(name, root=None):
  """The manifest of the pretrained model `name`: its files' checksums, training and results.

  Args:
    name: one of `names(root)`.
    root: where the models are (default: this package's directory).

  Returns:
    The manifest as a dict (`files`: {path relative to the model's directory: SHA-256}).

  Raises:
    ValueError: for an unknown `name`, or a missing or unreadable manifest.
  """
  path = os.path.join(directory(name, root), MANIFEST)
  try:
    with open(path, encoding="utf-8") as f:
      values = json.load(f)
  except FileNotFoundError:
    raise ValueError(f"pretrained model {name!r} is incomplete: {path} is missing; "
                     f"{_REINSTALL}") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"pretrained model {name!r}: cannot read {path} ({e}); "
                     f"{_REINSTALL}") from None
  if not isinstance(values, dict) or not isinstance(values.get("files"), dict):
    raise ValueError(f"pretrained model {name!r}: {path} lists no files; {_REINSTALL}")
  return values


def part_of(relative_path):
  """Which form a manifest entry (a path relative to the model's directory, "/"-separated)
  belongs to: "saved_model", "keras" or "run"."""
  if relative_path.split("/")[0] == SAVED_MODEL_DIR:
    return "saved_model"
  return "keras" if relative_path.endswith(".keras") else "run"


def sha256(path):
  """The SHA-256 of the file at `path`, as 64 hex digits (`OSError` if it cannot be read)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def verify(name, parts=PARTS, root=None):
  """Checks the files of `parts` of the pretrained model `name` against its manifest.

  Args:
    name: one of `names(root)`.
    parts: which forms to check (a subset of `PARTS`).
    root: where the models are (default: this package's directory).

  Raises:
    ValueError: naming the first missing or unreadable file, the first whose SHA-256 differs
      from the manifest's (a truncated or altered file), or a file of `REQUIRED` that the
      manifest does not list.
  """
  parts = (parts,) if isinstance(parts, str) else tuple(parts)
  for part in parts:
    if part not in PARTS:
      raise ValueError(f"part must be one of {', '.join(PARTS)}, got {part!r}.")
  base = directory(name, root)
  listed = manifest(name, root)["files"]
  for part in parts:
    for pattern in REQUIRED[part]:
      pattern = pattern.replace("NAME", name)
      if not fnmatch.filter(listed, pattern):
        raise ValueError(f"pretrained model {name!r}: its manifest lists no {pattern} (the "
                         f"{part} form); {_REINSTALL}")
  for relative, expected in sorted(listed.items()):
    if part_of(relative) not in parts:
      continue
    file_path = os.path.join(base, *relative.split("/"))
    if not os.path.isfile(file_path):
      raise ValueError(f"pretrained model {name!r} is incomplete: {file_path} is missing; "
                       f"{_REINSTALL}")
    try:
      actual = sha256(file_path)
    except OSError as e:
      raise ValueError(f"pretrained model {name!r}: cannot read {file_path} "
                       f"({e.strerror}).") from None
    if actual != expected:
      raise ValueError(f"pretrained model {name!r}: {file_path} is corrupted (SHA-256 "
                       f"{actual[:16]}... where the manifest records {expected[:16]}...); "
                       f"{_REINSTALL}")


def path(name, part="run", root=None):
  """The verified path of one form of the pretrained model `name`.

  Args:
    name: one of `names(root)`.
    part: "run": the training-run directory (`config.json` and checkpoint), a `model_dir` for
      `lcflow_tf.evaluation.load_run`, `lcflow-eval` and `lcflow-export`; "saved_model": the
      SavedModel directory (`tf.saved_model.load`, TensorFlow Serving); "keras": the `.keras`
      file (`keras.models.load_model`).
    root: where the models are (default: this package's directory).

  Returns:
    The absolute path, after its files matched the manifest's checksums.

  Raises:
    ValueError: for an unknown `name` or `part`, or a missing or corrupted file.
  """
  verify(name, (part,), root)
  base = directory(name, root)
  if part == "run":
    return base
  if part == "saved_model":
    return os.path.join(base, SAVED_MODEL_DIR)
  return os.path.join(base, name + ".keras")


def load(name="fashion_mnist_glow", weights="ema", root=None):
  """The pretrained model `name` as a `lcflow_tf.FlowModel`, ready to sample and evaluate.

  Built from the shipped training run (as Keras applications build their architecture and load
  weights), after its files matched their checksums. Compile it to train further.

  Args:
    name: one of `names(root)`.
    weights: "ema" (the averaged weights, which the recorded results are of) or "raw" (the
      trained weights of the last step).
    root: where the models are (default: this package's directory).

  Returns:
    A `FlowModel` (its `flow` holds the weights; `num_bins` the images' levels).

  Raises:
    ValueError: for an unknown `name` or `weights`, or a missing or corrupted file.
  """
  from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
  from lcflow_tf import keras_model  # pylint: disable=g-import-not-at-top
  run = evaluation.load_run(path(name, "run", root), weights=weights)
  return keras_model.FlowModel(run.flow, run.num_bins, name=name)
