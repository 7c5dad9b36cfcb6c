"""Catalogue of bad inputs: each gives a specific, clear error and writes nothing.

One table, `CASES`, across the CLIs (train.py, eval.py, export.py: non-zero exit, exactly one
`error: ...` / flag-parsing line matching the regex, no traceback), the library (the exception
type and message) and the SavedModel signatures. Every case runs in its own sandbox directory
(the CLIs also use it as their working directory); its file listing and contents must be the
same afterwards, and so must the shared tiny runs the cases read.

The CLI cases are run together by a module fixture, two at a time, through
`tests/cli_runner.py`: one process per script imports it and TensorFlow once and forks a child
per case, which runs the script's main with the case's flags as `python script.py` would; the
parametrised test then checks each one's result.

NaN, infinite or out-of-[0, 1) float images are an error only for a flow built with
`validate_args=True` (TFP's convention), as `evaluation.load_run` builds it: the cases
`log-prob-*-image`. Without it (the default, what training uses: a check would turn the
training step's skip of a non-finite update, see test_training.py, into an exception)
`Flow.log_prob` returns NaN for them; see `test_nan_images_give_nan_without_validate_args`
and tests/test_validate_args.py.
"""

import collections
import hashlib
import os
import re
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import averaging
from lcflow_tf import compat
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import flows
from lcflow_tf import frechet
from lcflow_tf import sample_quality
from lcflow_tf import training
from tests import cli_runner

NUM_BINS = 17
# The shared runs, as TrainConfig fields and as the equivalent train.py flags.
TINY = dict(levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, split="static",
            lc_pilot_steps=0, warmup_steps=2, train_steps=2)
TRAIN_FLAGS = [f"--{k}={v}" for k, v in TINY.items()] + ["--noeval_at_end"]
_TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before)")
PARALLEL_CLIS = 2

Case = collections.namedtuple("Case", "id target call message exc", defaults=(ValueError,))


# --- file helpers ----------------------------------------------------------------------------
def write_idx(path, num=10, magic=0x803, truncate_to=None):
  """An IDX3 file of `num` random 28x28 images (header says `num`), cut at `truncate_to`."""
  images = np.random.default_rng(num).integers(0, 256, (num, 28, 28), dtype=np.uint8)
  raw = struct.pack(">IIII", magic, num, 28, 28) + images.tobytes()
  path.write_bytes(raw[:truncate_to] if truncate_to is not None else raw)
  return str(path)


def fashion_dir(sb, num_train=10, **train_kwargs):
  """sb/idx with a train IDX file (`train_kwargs` spoil it) and a valid t10k file."""
  d = sb / "idx"
  d.mkdir()
  write_idx(d / "train-images-idx3-ubyte", num_train, **train_kwargs)
  write_idx(d / "t10k-images-idx3-ubyte", 4)


def not_gzip(sb):
  d = sb / "idx"
  d.mkdir()
  (d / "train-images-idx3-ubyte.gz").write_bytes(  # gzip's magic, then garbage
      b"\x1f\x8b" + np.random.default_rng(1).bytes(500))
  write_idx(d / "t10k-images-idx3-ubyte", 4)


def copy_run(runs, name, sb, spoil=None):
  target = sb / "run"
  shutil.copytree(runs[name], target)
  if spoil == "garble":  # every byte of the data file replaced (all checksums fail)
    p = target / "ckpt-2.data-00000-of-00001"
    p.write_bytes(np.random.default_rng(0).bytes(p.stat().st_size))
  elif spoil == "truncate":
    with open(target / "ckpt-2.data-00000-of-00001", "r+b") as f:
      f.truncate(1000)
  elif spoil == "index":
    (target / "ckpt-2.index").write_bytes(b"not an sstable" * 20)
  return str(target)


def image_with(value):
  """Two float32 8x8x1 images at 0.5, with `value` at one pixel of the first."""
  x = np.full((2, 8, 8, 1), 0.5, np.float32)
  x[0, 3, 3, 0] = value
  return x


def fake_saved_model(path):
  """A directory with an unparsable saved_model.pb."""
  path.mkdir()
  (path / "saved_model.pb").write_bytes(b"not a SavedModel" * 10)


def a_file(sb):
  (sb / "file").write_text("a regular file")


def read_only_dir(sb):
  if os.geteuid() == 0:
    pytest.skip("running as root: permission bits do not stop writes (see *-under-a-file)")
  (sb / "ro").mkdir()
  (sb / "ro").chmod(0o500)


def snapshot(root):
  """{relative path: sha1} of every file under root (and the directories, as None)."""
  result = {}
  for directory, dirs, files in os.walk(root):
    for name in dirs:
      result[os.path.relpath(os.path.join(directory, name), root)] = None
    for name in files:
      path = os.path.join(directory, name)
      with open(path, "rb") as f:
        result[os.path.relpath(path, root)] = hashlib.sha1(f.read()).hexdigest()
  return result


# --- the table -------------------------------------------------------------------------------
def cli(*args, setup=None, env=None):
  """A CLI case: flags ({sb}: the sandbox, {glow}/{rnvp}: the shared runs), setup(sb, runs)
  writes its input files, env: extra environment variables."""
  return dict(args=list(args), setup=setup, env=env or {})


def lib(run, setup=None):
  """A library case: setup(context) writes its input files, run(context) must raise."""
  return dict(run=run, setup=setup)


TRAIN = "train.py"
EVAL = "eval.py"
EXPORT = "export.py"
LIB = "library"
SIG = "signature"

CASES = [
    # train.py: data
    Case("train-idx-truncated", TRAIN, cli(
        "--dataset=fashion_mnist", "--data_dir={sb}/idx", "--model_dir={sb}/run", *TRAIN_FLAGS,
        setup=lambda sb, runs: fashion_dir(sb, truncate_to=16 + 5 * 784)),
         r"IDX file '.*/idx/train-images-idx3-ubyte' is truncated: the header declares 10 "
         r"images of 28x28 \(7856 bytes in all\), but it has 3936 bytes"),
    Case("train-idx-not-gzip", TRAIN, cli(
        "--dataset=fashion_mnist", "--data_dir={sb}/idx", "--model_dir={sb}/run", *TRAIN_FLAGS,
        setup=lambda sb, runs: not_gzip(sb)),
         r"IDX file '.*train-images-idx3-ubyte.gz' is not a valid gzip stream \(truncated or "
         r"corrupted download\?\)"),
    Case("train-empty-dataset", TRAIN, cli(
        "--dataset=fashion_mnist", "--data_dir={sb}/idx", "--model_dir={sb}/run", *TRAIN_FLAGS,
        setup=lambda sb, runs: fashion_dir(sb, num_train=0)),
         r"^the training set of fashion_mnist is empty \(0 images\)\.$"),
    Case("train-batch-larger-than-dataset", TRAIN, cli(
        "--dataset=fashion_mnist", "--data_dir={sb}/idx", "--model_dir={sb}/run", *TRAIN_FLAGS,
        setup=lambda sb, runs: fashion_dir(sb, num_train=10)),
         r"^batch_size=16 is larger than the training set of fashion_mnist \(10 images\)\.$"),
    Case("train-data-dir-missing", TRAIN, cli(
        "--dataset=fashion_mnist", "--data_dir={sb}/nothing", "--model_dir={sb}/run",
        *TRAIN_FLAGS),
         r"^data_dir '.*/nothing' does not exist \(or is not a directory\); give the directory "
         r"that holds the fashion_mnist data"),
    # train.py: flags
    Case("train-batch-size-zero", TRAIN, cli("--model_dir={sb}/run", "--batch_size=0"),
         r"^batch_size must be an integer >= 1, got 0\.$"),
    Case("train-data-seed-negative", TRAIN, cli("--model_dir={sb}/run", "--data_seed=-1"),
         r"^data_seed must be an integer >= 0, got -1\.$"),
    Case("train-unknown-split", TRAIN, cli("--model_dir={sb}/run", "--split=best"),
         r"^split must be one of \['static', 'random', 'lc', 'lc_reverse', 'logdet', "
         r"'logdet_reverse', 'variance'\], "
         r"got 'best'\.$"),
    Case("train-learning-rate-zero", TRAIN, cli("--model_dir={sb}/run", "--learning_rate=0"),
         r"^learning_rate must be in \(0.0, inf\], got 0.0\.$"),
    Case("train-ema-decay-one", TRAIN, cli("--model_dir={sb}/run", "--ema_decay=1"),
         r"^ema_decay must be in \[0.0, 1.0\), got 1.0\.$"),
    Case("train-unbounded-tanh-scale", TRAIN, cli("--model_dir={sb}/run", "--scale_fn=tanh",
                                                  "--max_log_scale=0", *TRAIN_FLAGS),
         r"^max_log_scale=0 \(unbounded\) needs scale_fn='sigmoid'; the 'tanh' "
         r"scale is always bounded \(give a number > 0\)\.$"),
    Case("train-unknown-lr-schedule", TRAIN, cli("--model_dir={sb}/run", "--lr_schedule=step"),
         r"^lr_schedule must be one of \['constant', 'cosine', 'linear'\], got 'step'\.$"),
    Case("train-multi-worker-without-tf-config", TRAIN,
         cli("--model_dir={sb}/run", "--strategy=multi_worker", *TRAIN_FLAGS),
         r"^strategy 'multi_worker' reads the cluster from the TF_CONFIG environment variable, "
         r"which is not set\.$"),
    Case("train-multi-worker-tf-config-not-json", TRAIN,
         cli("--model_dir={sb}/run", "--strategy=multi_worker", *TRAIN_FLAGS,
             env={"TF_CONFIG": "worker=host1"}),
         r"^strategy 'multi_worker': TF_CONFIG is not a valid cluster description "
         r"\(JSONDecodeError: .*\); expected JSON such as"),
    # train.py: directories
    Case("train-model-dir-under-a-file", TRAIN,
         cli("--model_dir={sb}/file/run", *TRAIN_FLAGS, setup=lambda sb, runs: a_file(sb)),
         r"^model_dir .*/file/run cannot be created: .*/file is a file, not a directory\.$"),
    Case("train-export-dir-exists", TRAIN,
         cli("--model_dir={sb}/run", "--export_dir={sb}/exported", *TRAIN_FLAGS,
             setup=lambda sb, runs: (sb / "exported").mkdir()),
         r"export_dir .*/exported already exists; pass overwrite=True \(export.py --overwrite, "
         r"train.py --overwrite_export\)"),
    Case("train-export-dir-contains-model-dir", TRAIN,
         cli("--model_dir={sb}/run", "--export_dir={sb}", "--overwrite_export", *TRAIN_FLAGS,
             setup=lambda sb, runs: copy_run(runs, "glow", sb)),
         r"export_dir .* is or contains the run's model_dir .*/run; choose another export_dir"),
    Case("train-resume-from-corrupted-checkpoint", TRAIN,
         cli("--model_dir={sb}/run", *TRAIN_FLAGS, "--train_steps=4",
             setup=lambda sb, runs: copy_run(runs, "glow", sb, "garble")),
         r"^cannot restore checkpoint .*/run/ckpt-2: the files are unreadable \(corrupted or "
         r"truncated\?\): .*(?i:checksum does not match)"),
    # eval.py
    Case("eval-corrupted-checkpoint", EVAL, cli(
        "--model_dir={sb}/run", setup=lambda sb, runs: copy_run(runs, "glow", sb, "garble")),
         r"^cannot restore checkpoint .*/run/ckpt-2: the files are unreadable \(corrupted or "
         r"truncated\?\)"),
    Case("eval-checkpoint-of-another-architecture", EVAL,
         cli("--model_dir={glow}", "--checkpoint={rnvp}/ckpt-2"),
         r"^checkpoint .*/rnvp/ckpt-2 does not match the model of .*/glow/config.json: Found "
         r"\d+ Python objects that were not bound to checkpointed values"),
    Case("eval-run-without-checkpoint", EVAL, cli(
        "--model_dir={sb}/run", setup=lambda sb, runs: config_lib.write_train_config(
            str(sb / "run"), config_lib.TrainConfig.from_flags(**TINY))),
         r"^model_dir .*/run has no checkpoint yet\.$"),
    Case("eval-negative-temperature", EVAL, cli("--model_dir={glow}", "--temperatures=0.7,-1"),
         r"^temperatures must be in \[0.0, inf\], got -1.0\.$"),
    Case("eval-unknown-weights", EVAL, cli("--model_dir={glow}", "--weights=best"),
         r"^weights must be one of \['ema', 'raw'\], got 'best'\.$"),
    Case("eval-output-dir-under-a-file", EVAL,
         cli("--model_dir={glow}", "--output_dir={sb}/file/eval",
             setup=lambda sb, runs: a_file(sb)),
         r"^output_dir .*/file/eval cannot be created: .*/file is a file, not a directory\.$"),
    Case("eval-classifier-dir-under-a-file", EVAL,
         cli("--model_dir={glow}", "--sample_quality", "--classifier_dir={sb}/file/cls",
             setup=lambda sb, runs: a_file(sb)),
         r"^classifier_dir .*/file/cls cannot be created: .*/file is a file, not a directory\.$"),
    # export.py
    Case("export-model-dir-without-config", EXPORT,
         cli("--model_dir={sb}", "--export_dir={sb}/exported"),
         r"^model_dir .* has no config.json; it is not a training run directory"),
    Case("export-export-dir-exists", EXPORT,
         cli("--model_dir={glow}", "--export_dir={sb}/exported",
             setup=lambda sb, runs: (sb / "exported").mkdir()),
         r"^export_saved_model: export_dir .*/exported already exists; pass overwrite=True"),
    Case("export-export-dir-is-model-dir", EXPORT,
         cli("--model_dir={sb}/run", "--export_dir={sb}/run", "--overwrite",
             setup=lambda sb, runs: copy_run(runs, "glow", sb)),
         r"^export_saved_model: export_dir .*/run is or contains the run's model_dir"),
    Case("export-export-dir-under-a-file", EXPORT,
         cli("--model_dir={glow}", "--export_dir={sb}/file/exported",
             setup=lambda sb, runs: a_file(sb)),
         r"^export_saved_model: export_dir .*/file/exported cannot be created: .*/file is a "
         r"file, not a directory\.$"),
    Case("export-missing-export-dir-flag", EXPORT, cli("--model_dir={glow}"),
         r"flag --export_dir=None: Flag --export_dir must have a value other than None"),
    Case("export-version-zero", EXPORT,
         cli("--model_dir={glow}", "--export_dir={sb}/models", "--version=0"),
         r"^export_saved_model: version must be None or an int >= 1 \(the number of the "
         r"TensorFlow Serving version folder\), got 0\.$"),
    Case("export-version-folder-exists", EXPORT,
         cli("--model_dir={glow}", "--export_dir={sb}/models", "--version=1",
             setup=lambda sb, runs: (sb / "models" / "1").mkdir(parents=True)),
         r"^export_saved_model: version folder 1 of export_dir .*/models/1 already exists; "
         r"pass overwrite=True"),
    Case("export-upgrade-not-a-saved-model", EXPORT,
         cli("--upgrade={sb}/old", "--export_dir={sb}/new",
             setup=lambda sb, runs: (sb / "old").mkdir()),
         r"^upgrade_saved_model: '.*/old' is not a SavedModel directory \(no saved_model.pb "
         r"in it\)"),
    Case("export-precision-not-a-float-type", EXPORT,
         cli("--model_dir={glow}", "--export_dir={sb}/exported", "--precision=float16"),
         r"flag --precision=float16: value should be one of <float32\|float64>"),
    Case("export-upgrade-with-precision", EXPORT,
         cli("--upgrade={sb}/old", "--export_dir={sb}/new", "--precision=float64"),
         r"^--precision belongs to --model_dir; --upgrade re-saves an export as it is\.$"),
    Case("train-export-version-without-export-dir", TRAIN,
         cli("--model_dir={sb}/run", "--export_version=2", *TRAIN_FLAGS),
         r"^--export_version=2 needs --export_dir \(the model base path"),

    # library: data
    Case("read-idx-truncated", LIB, lib(
        lambda c: data.read_idx_images(c.sb / "x"),
        setup=lambda c: write_idx(c.sb / "x", 10, truncate_to=100)),
         r"is truncated: the header declares 10 images of 28x28"),
    Case("read-idx-label-file", LIB, lib(
        lambda c: data.read_idx_images(c.sb / "x"),
        setup=lambda c: write_idx(c.sb / "x", 3, magic=0x801)),
         r"has magic number 0x00000801; expected 0x00000803.*label file"),
    Case("read-idx-gz-name-not-gzip", LIB, lib(
        lambda c: data.read_idx_images(c.sb / "x.gz"), setup=lambda c: write_idx(c.sb / "x.gz")),
         r"ends in .gz but is not gzip data"),
    Case("read-idx-missing", LIB, lib(lambda c: data.read_idx_images(c.sb / "missing")),
         r"IDX file '.*missing' does not exist"),
    Case("fashion-mnist-test-file-missing", LIB, lib(
        lambda c: data.load_dataset("fashion_mnist", str(c.sb)),
        setup=lambda c: write_idx(c.sb / "train-images-idx3-ubyte", 3)),
         r"no t10k-images-idx3-ubyte\[.gz\] in .*; both IDX image files are needed"),
    Case("unknown-dataset", LIB, lib(lambda c: data.load_dataset("cifar100")),
         r"dataset must be one of \['digits'.*\], got 'cifar100'"),
    Case("pipeline-empty-dataset", LIB, lib(lambda c: data.make_train_pipeline(
        tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 1), np.uint8)), 4, NUM_BINS, 0)),
         r"dataset is empty \(0 images\)"),
    Case("pipeline-batch-larger-than-dataset", LIB, lib(lambda c: data.make_train_pipeline(
        tf.data.Dataset.from_tensor_slices(np.zeros((3, 8, 8, 1), np.uint8)), 4, NUM_BINS, 0)),
         r"batch_size=4 is larger than the dataset \(3 images\)"),
    Case("pipeline-float-images", LIB, lib(lambda c: data.make_train_pipeline(
        tf.data.Dataset.from_tensor_slices(np.zeros((3, 8, 8, 1), np.float32)), 2, NUM_BINS,
        0)), r"dataset elements must be integer image tensors"),
    # library: the flow
    Case("flow-astype-unsupported-dtype", LIB, lib(lambda c: c.flow.astype("float16")),
         r"^Flow.astype: dtype must be one of \['float32', 'float64'\], got 'float16'\.$"),
    Case("log-prob-wrong-channel-count", LIB, lib(
        lambda c: c.flow.log_prob(np.zeros((2, 8, 8, 3), np.float32))),
         r"expected images of shape \[\.\.\., 8, 8, 1\], got shape \[2, 8, 8, 3\]"),
    Case("log-prob-wrong-image-size", LIB, lib(
        lambda c: c.flow.log_prob(np.zeros((2, 4, 4, 1), np.float32))),
         r"expected images of shape \[\.\.\., 8, 8, 1\], got shape \[2, 4, 4, 1\]"),
    Case("log-prob-nan-image", LIB, lib(lambda c: c.flow.log_prob(image_with(np.nan))),
         r"^Flow\.log_prob: images must be finite values in \[0, 1\) \(dequantised "
         r"intensities\); got 1 non-finite values \(1 NaN, 0 inf\) of 128\.$"),
    Case("log-prob-out-of-range-image", LIB, lib(lambda c: c.flow.log_prob(image_with(5.0))),
         r"^Flow\.log_prob: images must be finite values in \[0, 1\) .*; got values in "
         r"\[0\.5, 5\.0\]\.$"),
    Case("log-prob-inf-image-in-tf-function", LIB, lib(
        lambda c: tf.function(c.flow.log_prob)(tf.constant(image_with(np.inf)))),
         r"Flow\.log_prob: images must be finite values in \[0, 1\) \(dequantised "
         r"intensities\); got 1 non-finite values \(NaN or inf\) of 128",
         tf.errors.InvalidArgumentError),
    Case("decode-nan-latent", LIB, lib(lambda c: c.flow.decode(image_with(np.nan))),
         r"^Flow\.decode: latents must be finite values; got 1 non-finite values \(1 NaN, "
         r"0 inf\) of 128\.$"),
    Case("bits-per-dim-value-equal-to-num-bins", LIB, lib(
        lambda c: c.flow.bits_per_dim(np.full((2, 8, 8, 1), 17), num_bins=NUM_BINS)),
         r"image values must be integers in \[0, 17\) \(bins=17\); got values in \[17, 17\]"),
    Case("bits-per-dim-negative-values", LIB, lib(lambda c: c.flow.bits_per_dim(
        np.arange(-1, 63).reshape(1, 8, 8, 1), num_bins=NUM_BINS)),
         r"image values must be integers in \[0, 17\) \(bins=17\); got values in \[-1, 62\]"),
    Case("bits-per-dim-values-above-n-bits", LIB, lib(
        lambda c: c.flow.bits_per_dim(np.full((1, 8, 8, 1), 16), n_bits=4)),
         r"image values must be integers in \[0, 16\)"),
    Case("bits-per-dim-out-of-range-in-tf-function", LIB, lib(
        lambda c: tf.function(lambda k: c.flow.bits_per_dim(k, num_bins=NUM_BINS))(
            tf.fill([1, 8, 8, 1], 40))),
         r"image values must be integers in \[0, 17\)", tf.errors.InvalidArgumentError),
    Case("bits-per-dim-float-images", LIB, lib(lambda c: c.flow.bits_per_dim(
        np.zeros((1, 8, 8, 1), np.float32), num_bins=NUM_BINS)),
         r"expected integer images in \[0, 17\), got dtype float32; call log_prob"),
    Case("sample-negative-count", LIB, lib(lambda c: c.flow.sample(-1)),
         r"sample: n must be an integer >= 0, got -1"),
    Case("build-flow-too-many-levels", LIB, lib(lambda c: flows.build_flow(
        (8, 8, 1), levels=4, steps_per_level=1, hidden_channels=8)),
         r"H and W must be divisible by 16; got image_shape \(8, 8, 1\)"),
    # library: configs, training, evaluation
    Case("config-nonfinite-lr-factor", LIB, lib(
        lambda c: config_lib.TrainConfig(nonfinite_lr_factor=1.5)),
         r"nonfinite_lr_factor must be in \(0.0, 1.0\), got 1.5"),
    Case("config-negative-max-shift", LIB, lib(
        lambda c: config_lib.TrainConfig.from_flags(max_shift=-1.0)),
         r"max_shift must be in \[0.0, inf\], got -1.0"),
    Case("config-negative-lr-min-ratio", LIB, lib(
        lambda c: config_lib.TrainConfig(lr_schedule="linear", lr_min_ratio=-0.1)),
         r"lr_min_ratio must be in \[0.0, 1.0\), got -0.1"),
    Case("config-unknown-lr-schedule", LIB, lib(
        lambda c: config_lib.TrainConfig(lr_schedule="exponential")),
         r"lr_schedule must be one of \['constant', 'cosine', 'linear'\], got 'exponential'"),
    Case("weight-average-decay-one", LIB, lib(
        lambda c: averaging.WeightAverage(c.flow.trainable_variables, 1.0)),
         r"WeightAverage: decay must be in \[0, 1\), got 1.0"),
    Case("config-unknown-architecture", LIB, lib(
        lambda c: config_lib.TrainConfig.from_flags(architecture="flow++")),
         r"architecture must be one of \['glow', 'realnvp'\], got 'flow\+\+'"),
    Case("eval-config-no-temperatures", LIB, lib(
        lambda c: config_lib.EvalConfig(temperatures=())),
         r"temperatures must be a non-empty tuple"),
    Case("trainer-model-dir-under-a-file", LIB, lib(lambda c: training.Trainer(
        config_lib.TrainConfig.from_flags(**TINY), str(c.sb / "file" / "run"), dataset=c.digits),
                                                    setup=lambda c: a_file(c.sb)),
         r"model_dir .*/file/run cannot be created: .*/file is a file, not a directory"),
    Case("trainer-model-dir-not-writable", LIB, lib(lambda c: training.Trainer(
        config_lib.TrainConfig.from_flags(**TINY), str(c.sb / "ro" / "run"), dataset=c.digits),
                                                    setup=lambda c: read_only_dir(c.sb)),
         r"model_dir .*/ro/run is not writable \(no write permission on .*/ro\)"),
    Case("multi-worker-without-tf-config", LIB, lib(
        lambda c: distribute.make_strategy("multi_worker"),
        setup=lambda c: c.monkeypatch.delenv("TF_CONFIG", raising=False)),
         r"reads the cluster from the TF_CONFIG environment variable, which is not set"),
    Case("load-run-garbage-index", LIB, lib(
        lambda c: evaluation.load_run(str(c.sb / "run"), dataset=c.digits),
        setup=lambda c: copy_run(c.runs, "glow", c.sb, "index")),
         r"cannot restore checkpoint .*ckpt-2: the files are unreadable \(corrupted or "
         r"truncated\?\)"),
    Case("load-run-truncated-data", LIB, lib(
        lambda c: evaluation.load_run(str(c.sb / "run"), dataset=c.digits),
        setup=lambda c: copy_run(c.runs, "glow", c.sb, "truncate")),
         r"cannot restore checkpoint .*ckpt-2: the files are unreadable"),
    Case("load-run-unknown-weights", LIB, lib(lambda c: evaluation.load_run(
        str(c.runs["glow"]), dataset=c.digits, weights="averaged")),
         r"weights must be one of \['ema', 'raw'\], got 'averaged'"),
    Case("load-run-missing-checkpoint", LIB, lib(lambda c: evaluation.load_run(
        str(c.runs["glow"]), checkpoint=str(c.runs["glow"] / "ckpt-99"), dataset=c.digits)),
         r"checkpoint '.*ckpt-99' does not exist \(expected .*ckpt-99.index\)"),
    Case("evaluate-output-dir-under-a-file", LIB, lib(
        lambda c: evaluation.evaluate_model_dir(
            str(c.runs["glow"]), output_dir=str(c.sb / "file" / "eval"), dataset=c.digits),
        setup=lambda c: a_file(c.sb)),
         r"output_dir .*/file/eval cannot be created"),
    # library: sample quality
    Case("sample-quality-dataset-without-labels", LIB, lib(
        lambda c: sample_quality.load_or_train(
            data.load_dataset("fashion_mnist", str(c.sb / "idx")), str(c.sb / "cls")),
        setup=lambda c: fashion_dir(c.sb)),
         r"^sample quality needs a dataset with class labels to train its feature classifier: "
         r"dataset 'fashion_mnist' has no class labels: '.*/idx' lacks "
         r"train-labels-idx1-ubyte\[.gz\]"),
    Case("sample-quality-classifier-dir-under-a-file", LIB, lib(
        lambda c: sample_quality.load_or_train(c.digits, str(c.sb / "file" / "cls")),
        setup=lambda c: a_file(c.sb)),
         r"^classifier_dir .*/file/cls cannot be created: .*/file is a file, not a directory"),
    Case("frechet-distance-one-sample", LIB, lib(
        lambda c: frechet.frechet_distance_of_features(np.zeros((1, 4)),
                                                              np.zeros((5, 4)))),
         r"^frechet_distance: features1 must be \[N >= 2, F >= 1\] \(a covariance needs 2 "
         r"samples\), got shape \[1, 4\]\.$"),
    Case("quantize-samples-integer-images", LIB, lib(
        lambda c: sample_quality.quantize_samples(np.zeros((2, 8, 8, 1), np.uint8), NUM_BINS)),
         r"^quantize_samples: x must be float samples \[N, H, W, C\] in \[0, 1\), got dtype "
         r"uint8"),
    Case("eval-config-sample-quality-samples-one", LIB, lib(
        lambda c: config_lib.EvalConfig(sample_quality_samples=1)),
         r"^sample_quality_samples must be an integer >= 2, got 1\.$"),
    # library: export
    Case("export-existing-dir", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "model"), 17),
        setup=lambda c: (c.sb / "model").mkdir()),
         r"export_dir .*/model already exists; pass overwrite=True"),
    Case("export-under-a-file", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "file" / "model"), 17,
                                            overwrite=True),
        setup=lambda c: a_file(c.sb)),
         r"export_dir .*/file/model cannot be created: .*/file is a file, not a directory"),
    Case("export-num-bins-one", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "model"), 1)),
         r"num_bins must be an integer >= 2, got 1"),
    Case("export-version-zero-in-library", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "models"), 17, version=0)),
         r"version must be None or an int >= 1 \(the number of the TensorFlow Serving version "
         r"folder\), got 0"),
    Case("export-version-string-in-library", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "models"), 17, version="1")),
         r"version must be None or an int >= 1 .*, got '1'"),
    Case("export-version-in-a-saved-model", LIB, lib(
        lambda c: export.export_saved_model(c.flow, str(c.sb / "model"), 17, version=1),
        setup=lambda c: fake_saved_model(c.sb / "model")),
         r"export_dir .*/model is itself a SavedModel; with version=1 it must be a model base "
         r"path"),
    Case("upgrade-not-a-saved-model", LIB, lib(
        lambda c: compat.upgrade_saved_model(str(c.sb), str(c.sb / "new"))),
         r"upgrade_saved_model: '.*' is not a SavedModel directory"),
    Case("upgrade-into-itself", LIB, lib(
        lambda c: compat.upgrade_saved_model(str(c.sb / "old"), str(c.sb / "old"),
                                             overwrite=True),
        setup=lambda c: fake_saved_model(c.sb / "old")),
         r"export_dir .*/old is or contains the export being upgraded .*/old; choose another"),
    Case("upgrade-unreadable-saved-model", LIB, lib(
        lambda c: compat.upgrade_saved_model(str(c.sb / "old"), str(c.sb / "new")),
        setup=lambda c: fake_saved_model(c.sb / "old")),
         r"cannot load .*/old with tf.saved_model.load \(OSError: Cannot parse file"),
    Case("upgrade-not-an-lcflow-export", LIB, lib(
        lambda c: compat.upgrade_saved_model(str(c.sb / "other"), str(c.sb / "new")),
        setup=lambda c: tf.saved_model.save(tf.Module(), str(c.sb / "other"))),
         r"other is not an lcflow_tf export: it lacks the signatures \['serving_default', "
         r"'log_prob', 'sample', 'encode', 'decode'\] \(it has \[\]\)"),
    # SavedModel signatures
    Case("signature-value-equal-to-num-bins", SIG, lib(
        lambda c: c.serving.signatures["log_prob"](
            images=tf.fill([1, 8, 8, 1], tf.constant(17, tf.uint8)))),
         r"images must be integers in \[0, 17\) \(num_bins=17\)",
         tf.errors.InvalidArgumentError),
    Case("signature-value-255", SIG, lib(lambda c: c.serving.signatures["encode"](
        images=tf.fill([2, 8, 8, 1], tf.constant(255, tf.uint8)))),
         r"images must be integers in \[0, 17\)", tf.errors.InvalidArgumentError),
    Case("signature-wrong-channel-count", SIG, lib(lambda c: c.serving.signatures["log_prob"](
        images=tf.zeros([1, 8, 8, 3], tf.uint8))),
         r"images must have shape \[N, 8, 8, 1\]|shape",
         (tf.errors.InvalidArgumentError, ValueError, TypeError)),
    Case("signature-float-images", SIG, lib(lambda c: c.serving.signatures["log_prob"](
        images=tf.zeros([1, 8, 8, 1], tf.float32))),
         r"uint8|dtype", (tf.errors.InvalidArgumentError, ValueError, TypeError)),
    Case("signature-negative-sample-count", SIG, lib(lambda c: c.serving.signatures["sample"](
        num=tf.constant(-1), temperature=tf.constant(1.0), seed=tf.constant(0, tf.int64))),
         r"num must be >= 0", tf.errors.InvalidArgumentError),
    Case("signature-decode-nan-latent", SIG, lib(lambda c: c.serving.signatures["decode"](
        latent=tf.constant(image_with(np.nan)))),
         r"Flow\.decode: latents must be finite values; got 1 non-finite values",
         tf.errors.InvalidArgumentError),
    Case("signature-decode-wrong-shape", SIG, lib(lambda c: c.serving.signatures["decode"](
        latent=tf.zeros([1, 8, 8, 2]))),
         r"latent must have shape \[N, 8, 8, 1\]|shape",
         (tf.errors.InvalidArgumentError, ValueError, TypeError)),
]
CLI_CASES = [c for c in CASES if c.target in (TRAIN, EVAL, EXPORT)]


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(digits, tmp_path_factory):
  """Two tiny runs (2 steps, checkpoint ckpt-2): glow (TINY) and realnvp."""
  root = tmp_path_factory.mktemp("runs")
  made = {}
  for name, overrides in (("glow", {}), ("rnvp", {"architecture": "realnvp"})):
    trainer = training.Trainer(config_lib.TrainConfig.from_flags(**TINY, **overrides),
                               str(root / name), dataset=digits)
    iterator = trainer.distributed_iterator()
    for _ in range(2):
      trainer.train_step(next(iterator))
    trainer.save_checkpoint()
    made[name] = root / name
  return made


@pytest.fixture(scope="module")
def shared_snapshot(runs):
  return {name: snapshot(path) for name, path in runs.items()}


def _user_lines(stderr):
  return [line for line in stderr.splitlines() if line.strip() and not _TF_LOG_LINE.match(line)]


@pytest.fixture(scope="module")
def cli_results(runs, shared_snapshot, tmp_path_factory):
  """Runs every CLI case (per script, PARALLEL_CLIS at a time, `cli_runner.run_many`);
  {id: (result, sandbox, snapshot before)}."""
  del shared_snapshot  # taken before any CLI runs
  prepared = {}
  for case in CLI_CASES:
    sb = tmp_path_factory.mktemp(case.id)
    if case.call["setup"]:
      case.call["setup"](sb, runs)
    args = [a.format(sb=sb, glow=runs["glow"], rnvp=runs["rnvp"]) for a in case.call["args"]]
    prepared[case.id] = (case.target, sb, snapshot(sb),
                         cli_runner.command(*args, cwd=sb, env=case.call["env"]))
  done = {}
  for script in (TRAIN, EVAL, EXPORT):
    ids = [case_id for case_id, item in prepared.items() if item[0] == script]
    results = cli_runner.run_many(script, [prepared[i][3] for i in ids], parallel=PARALLEL_CLIS)
    done.update(zip(ids, results))
  return {case_id: (done[case_id], sb, before) for case_id, (_, sb, before, _) in
          prepared.items()}


@pytest.fixture(scope="module")
def serving(runs, digits, tmp_path_factory):
  flow = evaluation.load_run(str(runs["glow"]), dataset=digits).flow
  path = tmp_path_factory.mktemp("export") / "model"
  export.export_saved_model(flow, str(path), NUM_BINS)
  return flow, tf.saved_model.load(str(path))


class Context:
  """What a library case sees: its sandbox `sb`, the shared `runs`, `digits`, the glow run's
  `flow` and its exported `serving` model (built on first use), `monkeypatch`."""

  def __init__(self, request, sb, runs, monkeypatch):
    self._request, self.sb, self.runs, self.monkeypatch = request, sb, runs, monkeypatch

  @property
  def digits(self):
    return self._request.getfixturevalue("digits")

  @property
  def flow(self):
    return self._request.getfixturevalue("serving")[0]

  @property
  def serving(self):
    return self._request.getfixturevalue("serving")[1]


# --- the test --------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, request, runs, shared_snapshot, tmp_path, monkeypatch):
  if case.target in (TRAIN, EVAL, EXPORT):
    result, sb, before = request.getfixturevalue("cli_results")[case.id]
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in _user_lines(result.stderr)
              if line.startswith("error: ") or "Flags parsing error" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    message = re.sub(r"^(error: |FATAL Flags parsing error: )", "", errors[0])
    assert re.search(case.message, message), message
    assert snapshot(sb) == before  # nothing created, changed or deleted
  else:
    context = Context(request, tmp_path, runs, monkeypatch)
    if case.call["setup"]:
      case.call["setup"](context)
    before = snapshot(tmp_path)
    with pytest.raises(case.exc, match=case.message):
      case.call["run"](context)
    assert snapshot(tmp_path) == before  # nothing created, changed or deleted
  assert {name: snapshot(path) for name, path in runs.items()} == shared_snapshot


def test_nan_images_give_nan_without_validate_args(runs, digits):
  """Without validate_args NaN images are not rejected (see the module docstring): log_prob is
  NaN for them."""
  flow = evaluation.load_run(str(runs["glow"]), dataset=digits, validate_args=False).flow
  log_prob = flow.log_prob(image_with(np.nan)).numpy()
  assert np.isnan(log_prob[0]) and np.isfinite(log_prob[1])
