"""Frozen run configurations: what `train.py` and `eval.py` build from their flags.

`TrainConfig` holds everything a training run depends on. It is saved as `config.json` in the
run's model directory; a later run in the same directory must agree on every field except the
`RESUMABLE_FIELDS` (run length, logging, hardware), so that a resumed run continues the same
experiment. `EvalConfig` holds the settings of an evaluation.

Both validate their fields on construction and raise `ValueError` naming the field, the bad
value and what is allowed.
"""

import dataclasses
import json
import os

from lcflow_tf import checks
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import schedules
from lcflow_tf.bijectors import affine_coupling
from lcflow_tf.bijectors import factor_out
from lcflow_tf.bijectors import invertible_conv1x1

CONFIG_FILE = "config.json"

# Fields that may change when a run is resumed: they do not change what is being trained
# (`ema_decay` only changes the averages kept beside the weights, never the weights).
RESUMABLE_FIELDS = frozenset({
    "train_steps", "data_dir", "log_every", "checkpoint_every", "images_every",
    "keep_checkpoints", "strategy", "cpu_replicas", "jit", "mixed_precision",
    "max_nonfinite_steps", "max_nonfinite_restores", "nonfinite_lr_factor", "ema_decay",
})
# Fields added after runs were first saved, with the values that reproduce how a run whose
# config.json lacks them was trained (a constant learning rate after the warm-up, no weight
# averages; the floor does not matter then). `TrainConfig.from_dict` fills them in, and
# `inherit_unset` lets train.py keep a resumed run's values of them.
# The soft bounds of the couplings and split prior (`flows.BOUND_FIELDS`) were added with them:
# their values for such a run come from `flows.unbounded_values`.
ADDED_FIELDS = {"lr_schedule": "constant", "lr_min_ratio": schedules.DEFAULT_MIN_RATIO,
                "ema_decay": 0.0, **flows.unbounded_values()}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run (see `train.py --help` for the meaning of each field).

  The defaults train a small Glow with the likelihood-contribution split on scikit-learn's
  8x8 digits in a few minutes on two CPU cores.
  """
  # data
  dataset: str = "digits"
  data_dir: str | None = None
  n_bits: int | None = None
  # model (passed to `lcflow_tf.flows.build_flow`)
  architecture: str = "glow"
  levels: int = 2
  steps_per_level: int = 4
  hidden_channels: int = 64
  coupling: str = "affine"
  split: str = "lc"
  conv1x1: str = "lu"
  split_prior: str | None = None
  scale_fn: str | None = None
  resnet_blocks: int = 2
  max_log_scale: float | None = None
  max_shift: float | None = None
  max_log_sigma: float | None = None
  # likelihood-contribution protocol
  lc_pilot_steps: int = 300
  lc_reinit: bool = False
  # optimisation
  train_steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 1e-3
  warmup_steps: int = 200
  grad_clip_norm: float = 1000.0
  lr_schedule: str = schedules.DEFAULT_SCHEDULE
  lr_min_ratio: float = schedules.DEFAULT_MIN_RATIO
  ema_decay: float = 0.999
  seed: int = 0
  shuffle_buffer: int = 10000
  # runtime (may change on resume)
  strategy: str = "auto"
  cpu_replicas: int = 1
  jit: bool = False
  mixed_precision: bool = False
  log_every: int = 100
  checkpoint_every: int = 500
  images_every: int = 500
  keep_checkpoints: int = 3
  max_nonfinite_steps: int = 20
  max_nonfinite_restores: int = 3
  nonfinite_lr_factor: float = 0.5

  def __post_init__(self):
    data.check_dataset(self.dataset, self.n_bits)
    if self.data_dir is not None and not isinstance(self.data_dir, str):
      raise ValueError(f"data_dir must be a path or None, got {self.data_dir!r}.")
    checks.check_choice("architecture", self.architecture, flows.ARCHITECTURES)
    checks.check_int("levels", self.levels, 1)
    checks.check_int("steps_per_level", self.steps_per_level, 1)
    checks.check_int("hidden_channels", self.hidden_channels, 1)
    checks.check_choice("coupling", self.coupling, flows.COUPLINGS)
    checks.check_choice("split", self.split, lc.SPLITS)
    checks.check_choice("conv1x1", self.conv1x1, invertible_conv1x1.PARAMETRIZATIONS)
    checks.check_choice("split_prior", self.split_prior, (None,) + factor_out.PRIORS)
    checks.check_choice("scale_fn", self.scale_fn, (None,) + affine_coupling.SCALE_FNS)
    checks.check_int("resnet_blocks", self.resnet_blocks, 0)
    for name in flows.BOUND_FIELDS:
      if getattr(self, name) is not None:
        checks.check_number(name, getattr(self, name), 0.0, low_open=False)
    checks.check_int("lc_pilot_steps", self.lc_pilot_steps, 0)
    checks.check_bool("lc_reinit", self.lc_reinit)
    checks.check_int("train_steps", self.train_steps, 1)
    checks.check_int("batch_size", self.batch_size, 1)
    checks.check_number("learning_rate", self.learning_rate, 0.0)
    checks.check_int("warmup_steps", self.warmup_steps, 0)
    checks.check_number("grad_clip_norm", self.grad_clip_norm, 0.0)
    checks.check_choice("lr_schedule", self.lr_schedule, schedules.SCHEDULES)
    checks.check_number("lr_min_ratio", self.lr_min_ratio, 0.0, 1.0, low_open=False, high_open=True)
    checks.check_number("ema_decay", self.ema_decay, 0.0, 1.0, low_open=False, high_open=True)
    checks.check_int("seed", self.seed, 0)
    checks.check_int("shuffle_buffer", self.shuffle_buffer, 1)
    checks.check_choice("strategy", self.strategy, distribute.STRATEGIES)
    checks.check_int("cpu_replicas", self.cpu_replicas, 1)
    checks.check_bool("jit", self.jit)
    checks.check_bool("mixed_precision", self.mixed_precision)
    for name in ("log_every", "checkpoint_every", "images_every", "keep_checkpoints",
                 "max_nonfinite_steps"):
      checks.check_int(name, getattr(self, name), 1)
    checks.check_int("max_nonfinite_restores", self.max_nonfinite_restores, 0)
    checks.check_number("nonfinite_lr_factor", self.nonfinite_lr_factor, 0.0, 1.0, high_open=True)
    if self.split in lc.DATA_DEPENDENT_SPLITS:
      if self.lc_pilot_steps < 1:
        raise ValueError(f"lc_pilot_steps must be >= 1 for split {self.split!r} (the split is "
                         "fixed from statistics collected during the pilot), got "
                         f"{self.lc_pilot_steps!r}.")
      if self.lc_pilot_steps >= self.train_steps:
        raise ValueError(f"lc_pilot_steps must be smaller than train_steps (the step budget "
                         f"counts the pilot), got lc_pilot_steps={self.lc_pilot_steps} and "
                         f"train_steps={self.train_steps}.")

  @property
  def uses_pilot(self):
    """Whether the run has a pilot phase (a data-dependent split)."""
    return self.split in lc.DATA_DEPENDENT_SPLITS

  def flow_config(self, image_shape):
    """The `FlowConfig` of this run for images of `image_shape` (validates divisibility)."""
    return flows.FlowConfig(
        image_shape=tuple(int(d) for d in image_shape), architecture=self.architecture,
        levels=self.levels, steps_per_level=self.steps_per_level,
        hidden_channels=self.hidden_channels, coupling=self.coupling, split=self.split,
        conv1x1=self.conv1x1, split_prior=self.split_prior, scale_fn=self.scale_fn,
        resnet_blocks=self.resnet_blocks, seed=self.seed, max_log_scale=self.max_log_scale,
        max_shift=self.max_shift, max_log_sigma=self.max_log_sigma)

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    """Builds a config from `to_dict()` output; unknown keys are an error.

    Missing `ADDED_FIELDS` (a config.json written before they existed) take the values that
    reproduce how that run was trained; other missing fields take their defaults.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise ValueError(f"unknown config fields {unknown}; allowed: {sorted(known)}.")
    legacy = dict(ADDED_FIELDS, **flows.unbounded_values(values.get("architecture", "glow"),
                                                          values.get("scale_fn")))
    return cls(**{**legacy, **values})

  def differences(self, other, ignore=RESUMABLE_FIELDS):
    """[(field, self's value, other's value)] for the fields that differ, except `ignore`."""
    return [(f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)]


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Training settings of the feature classifier of `lcflow_tf.sample_quality`.

  Attributes:
    steps: Adam steps on the training split (cosine decay of the learning rate to 0).
    batch_size: images per step.
    learning_rate: initial Adam learning rate.
    feature_dim: units of the penultimate (feature) layer.
    seed: seed of the initial weights, the shuffling and the dropout.
  """
  steps: int = 2400
  batch_size: int = 128
  learning_rate: float = 1e-3
  feature_dim: int = 128
  seed: int = 0

  def __post_init__(self):
    checks.check_int("classifier steps", self.steps, 1)
    checks.check_int("classifier batch_size", self.batch_size, 1)
    checks.check_number("classifier learning_rate", self.learning_rate, 0.0)
    checks.check_int("classifier feature_dim", self.feature_dim, 1)
    checks.check_int("classifier seed", self.seed, 0)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Settings of an evaluation (see `eval.py --help`).

  Attributes:
    dequant_samples: K, dequantisation noise samples per test image.
    batch_size: images per evaluation batch.
    temperatures: sampling temperatures of the sample grids.
    num_samples: images per sample grid.
    reconstruction_images: test images used for the encode/decode error (0: none).
    seed: seed of the dequantisation noise and of the samples.
    sample_quality: also compute the Frechet distance of generated to test images on the
      features of a classifier (`lcflow_tf.sample_quality`), per temperature.
    sample_quality_samples: N generated images per temperature for it (>= 2); the test side
      uses min(N, test set size) images.
    classifier_dir: cache directory of that classifier (None: see
      `sample_quality.default_classifier_dir`).
    classifier: training settings of that classifier.
  """
  dequant_samples: int = 4
  batch_size: int = 256
  temperatures: tuple = (0.0, 0.5, 0.7, 0.8, 1.0)
  num_samples: int = 64
  reconstruction_images: int = 256
  seed: int = 1234
  sample_quality: bool = False
  sample_quality_samples: int = 10000
  classifier_dir: str | None = None
  classifier: ClassifierConfig = dataclasses.field(default_factory=ClassifierConfig)

  def __post_init__(self):
    checks.check_int("dequant_samples", self.dequant_samples, 1)
    checks.check_int("batch_size", self.batch_size, 1)
    checks.check_int("num_samples", self.num_samples, 1)
    checks.check_int("reconstruction_images", self.reconstruction_images, 0)
    checks.check_int("seed", self.seed, 0)
    if not isinstance(self.temperatures, tuple) or not self.temperatures:
      raise ValueError(f"temperatures must be a non-empty tuple of numbers >= 0, got "
                       f"{self.temperatures!r}.")
    for t in self.temperatures:
      checks.check_number("temperatures", t, 0.0, low_open=False)
    checks.check_bool("sample_quality", self.sample_quality)
    checks.check_int("sample_quality_samples", self.sample_quality_samples, 2)
    if self.classifier_dir is not None and (not isinstance(self.classifier_dir, str)
                                            or not self.classifier_dir):
      raise ValueError(f"classifier_dir must be a non-empty path or None, got "
                       f"{self.classifier_dir!r}.")
    if not isinstance(self.classifier, ClassifierConfig):
      raise ValueError(f"classifier must be a ClassifierConfig, got {self.classifier!r}.")


def read_train_config(model_dir):
  """The `TrainConfig` saved in `model_dir`, or None if it has no `config.json`.

  Raises:
    ValueError: if the file is not a valid saved config.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      values = json.load(f)
    return TrainConfig.from_dict(values["train"])
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{path} is not a valid lcflow_tf run config ({type(e).__name__}: {e}); "
                     "use another --model_dir.") from None


def write_train_config(model_dir, config):
  """Writes `config` as `model_dir/config.json` (atomically)."""
  files.write_json_atomic(os.path.join(model_dir, CONFIG_FILE), {"train": config.to_dict()})


def inherit_unset(config, saved, given):
  """`config` with the `ADDED_FIELDS` that are not in `given` taken from `saved`.

  train.py resumes a run with the learning-rate schedule and weight averaging it was
  started with (for a run saved before these fields existed: constant, none) unless their
  flags are given.

  Args:
    config: the `TrainConfig` built from the flags.
    saved: the `TrainConfig` of the run being resumed, or None (a new run: `config`).
    given: names of the fields set explicitly (flags given on the command line).
  """
  if saved is None:
    return config
  return dataclasses.replace(config, **{name: getattr(saved, name) for name in ADDED_FIELDS
                                        if name not in given})


def check_resumable(model_dir, config):
  """Checks that `model_dir` is empty of runs or holds a run of the same configuration.

  Returns:
    The saved config (None for a new run).

  Raises:
    ValueError: naming every differing field, when `model_dir` holds a different run; or
      when it holds checkpoints but no `config.json`.
  """
  saved = read_train_config(model_dir)
  if saved is None:
    if os.path.exists(os.path.join(model_dir, "checkpoint")):
      raise ValueError(f"model_dir {model_dir} holds checkpoints but no {CONFIG_FILE}; it was "
                       "not written by train.py. Use another --model_dir.")
    return None
  diffs = saved.differences(config)
  if diffs:
    listed = ", ".join(f"{name}={old!r} there but {new!r} now" for name, old, new in diffs)
    raise ValueError(f"model_dir {model_dir} holds a run with a different configuration "
                     f"({listed}); pass the same flags to resume it, or use another "
                     "--model_dir.")
  return saved
