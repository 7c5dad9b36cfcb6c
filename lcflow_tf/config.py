"""Frozen run configurations: what `train.py` and `eval.py` build from their flags.

`TrainConfig` holds everything a training run depends on; its model is a `flows.FlowConfig`
(`TrainConfig.model`: the one list of model fields, validated there). `FlowConfig` keeps the
papers' defaults (`build_flow`); a `TrainConfig`'s default model, and so train.py's defaults,
is `CPU_FLOW_DEFAULTS`: a small Glow that trains on scikit-learn's 8x8 digits in a few minutes
on two CPU cores, with the static split (the split study found no data-dependent rule lower
than it, docs/questions/does-the-lc-split-help.md; `split="lc"` is the paper's rule). The
model's `image_shape` is left None (the dataset sets it, `TrainConfig.flow_config`) and its
`seed` is the run's.

Flat names: train.py's flags are flat (`--levels`, `--split`, `--batch_size`, ...), one per
field of `TrainConfig` and of its model (`FLAG_FIELDS`); `TrainConfig.from_flags` and
`to_flags` convert, and `differences` and the errors of `check_resumable` name fields so.

`config.json`: a run's `TrainConfig` is saved in its model directory as
`{"train": TrainConfig.to_dict()}`, the model nested under `"model"`; files of older versions
are read through `lcflow_tf.compat`. A later run in the same directory must agree on every
field except the `RESUMABLE_FIELDS` (run length, logging, hardware), so that a resumed run
continues the same experiment. `EvalConfig` holds the settings of an evaluation.

All validate their fields on construction and raise `ValueError` naming the field, the bad
value and what is allowed. The rules that tie the pilot settings together (the budget, which
protocol takes which option) are the pilot protocol's: `lcflow_tf.pilots.check`.
"""

import dataclasses
import json
import os

from lcflow_tf import checks
from lcflow_tf import compat
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import schedules
from lcflow_tf.sample_quality import classifier as classifier_lib

CONFIG_FILE = "config.json"
# The model of train.py's defaults (and of a TrainConfig without `model`). The split follows
# the split study's evidence: static, until a rule is lower.
CPU_FLOW_DEFAULTS = flows.FlowConfig(levels=2, steps_per_level=4, hidden_channels=64,
                                     split="static")
# The model's fields that are settings of a run (flags): not image_shape (the data's), not the
# seed (the run's), not the dtype (training is float32).
MODEL_FLAGS = tuple(f.name for f in dataclasses.fields(flows.FlowConfig)
                    if f.name not in ("image_shape", "seed", "dtype"))
# The pilot protocols of the data-dependent splits (`lc_pilot`; `lcflow_tf.pilots`).
PILOT_PROTOCOLS = ("static", "nosplit")
# Fields that are no flag of train.py: a `nosplit` pilot's sub-run sets it (`pilots`).
SUB_RUN_FIELDS = ("open_junctions_from",)

# Fields that may change when a run is resumed: they do not change what is being trained
# (`ema_decay` only changes the averages kept beside the weights, never the weights).
RESUMABLE_FIELDS = frozenset({
    "train_steps", "data_dir", "log_every", "checkpoint_every", "images_every",
    "keep_checkpoints", "strategy", "cpu_replicas", "jit", "mixed_precision",
    "max_nonfinite_steps", "max_nonfinite_restores", "nonfinite_lr_factor", "ema_decay",
})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run (see `train.py --help` for the meaning of each field).

  Build it from flat flag names with `TrainConfig.from_flags(levels=2, batch_size=16, ...)`,
  or with a model: `TrainConfig(model=dataclasses.replace(CPU_FLOW_DEFAULTS, levels=3))`.

  Attributes:
    model: the `flows.FlowConfig` of the flow (image_shape None; its seed is set to `seed`).
    the others: see train.py's flags of the same names.
  """
  # data
  dataset: str = "digits"
  data_dir: str | None = None
  n_bits: int | None = None
  pad_to: int | None = None   # zero-pad the images to pad_to x pad_to (data.load_dataset)
  # model (`flows.FlowConfig`; the flags `--architecture`, `--levels`, ...)
  model: flows.FlowConfig = CPU_FLOW_DEFAULTS
  # the pilot protocol of the data-dependent splits (`lcflow_tf.pilots`)
  lc_pilot: str = "nosplit"
  lc_pilot_steps: int = 300
  lc_reinit: bool = False
  budget_matched_control: bool = False  # the static split, trained through the same pilots
  # None: a run. j: the sub-run of the `nosplit` pilot of junction j, whose flow factors
  # nothing out from junction j on (`flows.Flow`'s `open_junctions_from`); set by `pilots`.
  open_junctions_from: int | None = None
  # optimisation
  train_steps: int = 2000
  batch_size: int = 64
  learning_rate: float = 1e-3
  warmup_steps: int = 200
  # A guard against rare gradient explosions, not a per-step normaliser: a 28x28 Glow's norms
  # grow to ~4e4 while it trains, so a bound of 1000 clips every step and training is much
  # slower (docs/guide/numerics.md).
  grad_clip_norm: float = 1e5
  lr_schedule: str = schedules.DEFAULT_SCHEDULE
  lr_min_ratio: float = schedules.DEFAULT_MIN_RATIO
  ema_decay: float = 0.999
  seed: int = 0
  # The data order and dequantisation noise alone (None: `seed`), so that the two sources of
  # seed-to-seed spread can be varied one at a time (docs/questions/robustness.md).
  data_seed: int | None = None
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
    data.check_dataset(self.dataset, self.n_bits, self.pad_to)
    if self.data_dir is not None and not isinstance(self.data_dir, str):
      raise ValueError(f"data_dir must be a path or None, got {self.data_dir!r}.")
    self._check_model()
    checks.check_choice("lc_pilot", self.lc_pilot, PILOT_PROTOCOLS)
    checks.check_int("lc_pilot_steps", self.lc_pilot_steps, 0)
    checks.check_bool("lc_reinit", self.lc_reinit)
    checks.check_bool("budget_matched_control", self.budget_matched_control)
    if self.open_junctions_from is not None:
      flows.check_open_junctions_from(self.open_junctions_from, self.model.levels)
    checks.check_int("train_steps", self.train_steps, 1)
    checks.check_int("batch_size", self.batch_size, 1)
    checks.check_number("learning_rate", self.learning_rate, 0.0)
    checks.check_int("warmup_steps", self.warmup_steps, 0)
    checks.check_number("grad_clip_norm", self.grad_clip_norm, 0.0)
    checks.check_choice("lr_schedule", self.lr_schedule, schedules.SCHEDULES)
    checks.check_number("lr_min_ratio", self.lr_min_ratio, 0.0, 1.0, low_open=False,
                        high_open=True)
    checks.check_number("ema_decay", self.ema_decay, 0.0, 1.0, low_open=False, high_open=True)
    checks.check_int("seed", self.seed, 0)
    if self.model.seed != self.seed:  # the run's one seed seeds the model too
      object.__setattr__(self, "model", dataclasses.replace(self.model, seed=self.seed))
    if self.data_seed is not None:
      checks.check_int("data_seed", self.data_seed, 0)
    checks.check_int("shuffle_buffer", self.shuffle_buffer, 1)
    checks.check_choice("strategy", self.strategy, distribute.STRATEGIES)
    checks.check_int("cpu_replicas", self.cpu_replicas, 1)
    checks.check_bool("jit", self.jit)
    checks.check_bool("mixed_precision", self.mixed_precision)
    for name in ("log_every", "checkpoint_every", "images_every", "keep_checkpoints",
                 "max_nonfinite_steps"):
      checks.check_int(name, getattr(self, name), 1)
    checks.check_int("max_nonfinite_restores", self.max_nonfinite_restores, 0)
    checks.check_number("nonfinite_lr_factor", self.nonfinite_lr_factor, 0.0, 1.0,
                        high_open=True)

  def _check_model(self):
    if not isinstance(self.model, flows.FlowConfig):
      raise ValueError(f"model must be a flows.FlowConfig, got {self.model!r}.")
    if self.model.image_shape is not None:
      raise ValueError(f"model.image_shape must be None (the dataset sets it), got "
                       f"{self.model.image_shape!r}.")
    if self.model.dtype != "float32":
      raise ValueError(f"model.dtype must be 'float32' (training runs in float32), got "
                       f"{self.model.dtype!r}.")

  @property
  def uses_pilot(self):
    """Whether pilots fix the run's split (`lcflow_tf.pilots`): a data-dependent split, or the
    static split of the budget-matched control."""
    return self.model.split in lc.DATA_DEPENDENT_SPLITS or (
        self.budget_matched_control and self.model.split == "static")

  @property
  def stream_seed(self):
    """Seed of the training stream (order and dequantisation noise): `data_seed`, else `seed`."""
    return self.seed if self.data_seed is None else self.data_seed

  def load_dataset(self):
    """The run's `data.ImageDataset` (`dataset`, `data_dir`, `n_bits`, `pad_to`).

    Raises:
      ValueError: as `data.load_dataset` (e.g. missing files, a `data_dir` that does not exist).
    """
    return data.load_dataset(self.dataset, self.data_dir, self.n_bits, self.pad_to)

  def flow_config(self, image_shape):
    """The `FlowConfig` of this run for images of `image_shape` (validates divisibility)."""
    return dataclasses.replace(self.model, image_shape=tuple(int(d) for d in image_shape))

  # --- flat names (train.py's flags) and config.json ------------------------------------------
  @classmethod
  def from_flags(cls, **values):
    """A config from flat field names (`FLAT_FIELDS`); missing ones take their defaults.

    The model's fields (`MODEL_FLAGS`) change `CPU_FLOW_DEFAULTS`; the older names of renamed
    fields are read as today's (`compat.renamed`).

    Raises:
      ValueError: for an unknown name or a bad value.
    """
    values = compat.renamed(values)
    unknown = sorted(set(values) - set(FLAT_FIELDS))
    if unknown:
      raise ValueError(f"unknown config fields {unknown}; allowed: {sorted(FLAT_FIELDS)}.")
    model = {name: values.pop(name) for name in MODEL_FLAGS if name in values}
    return cls(model=dataclasses.replace(CPU_FLOW_DEFAULTS, **model), **values)

  def to_flags(self):
    """{flat name: value} of every field (`FLAT_FIELDS`, in that order)."""
    values = {}
    for f in dataclasses.fields(self):
      if f.name == "model":
        values.update({name: getattr(self.model, name) for name in MODEL_FLAGS})
      else:
        values[f.name] = getattr(self, f.name)
    return values

  def to_dict(self):
    """The nested dict saved in config.json (the model's fields under "model")."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values):
    """Builds a config from `to_dict()` output (config.json's "train") or a flat `to_flags()`.

    A dict written by an older version is read as the run it was (`compat.train_config_dict`).

    Raises:
      ValueError: for unknown keys or bad values.
    """
    values = compat.train_config_dict(values)
    if "model" not in values:
      return cls.from_flags(**values)
    _check_keys("config", values, {f.name for f in dataclasses.fields(cls)})
    model = values["model"]
    if not isinstance(model, dict):
      raise ValueError(f"config field model must be a dict of FlowConfig fields, got {model!r}.")
    _check_keys("model", model, {f.name for f in dataclasses.fields(flows.FlowConfig)})
    shape = model.get("image_shape")
    model = dict(model, image_shape=None if shape is None else tuple(shape))
    return cls(**dict(values, model=flows.FlowConfig(**model)))

  def differences(self, other, ignore=RESUMABLE_FIELDS):
    """[(flat name, self's value, other's value)] of the fields that differ, except `ignore`."""
    mine, theirs = self.to_flags(), other.to_flags()
    return [(name, mine[name], theirs[name]) for name in mine
            if name not in ignore and mine[name] != theirs[name]]


# Every flat name, in TrainConfig's order with the model's fields in place of `model`.
FLAT_FIELDS = tuple(TrainConfig().to_flags())
# The flat names that are train.py's flags.
FLAG_FIELDS = tuple(name for name in FLAT_FIELDS if name not in SUB_RUN_FIELDS)


def _check_keys(what, values, known):
  unknown = sorted(set(values) - known)
  if unknown:
    raise ValueError(f"unknown {what} fields {unknown}; allowed: {sorted(known)}.")


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
    classifier: training settings of that classifier (a
      `sample_quality.classifier.ClassifierConfig`).
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
  classifier: classifier_lib.ClassifierConfig = dataclasses.field(
      default_factory=classifier_lib.ClassifierConfig)

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
    if not isinstance(self.classifier, classifier_lib.ClassifierConfig):
      raise ValueError(f"classifier must be a ClassifierConfig, got {self.classifier!r}.")


def read_train_config(model_dir):
  """The `TrainConfig` saved in `model_dir`, or None if it has no `config.json`.

  Raises:
    ValueError: if the file is not a valid saved config.
  """
  values = _read_config_file(model_dir)
  if values is None:
    return None
  try:
    return TrainConfig.from_dict(values["train"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{os.path.join(model_dir, CONFIG_FILE)} is not a valid lcflow_tf run "
                     f"config ({type(e).__name__}: {e}); use another --model_dir.") from None


def read_data_record(model_dir):
  """What `config.json` records of the run's data: `(image_shape, num_bins)`, or None.

  With it, a run's model is rebuilt without reading its dataset (export, sampling, loading on
  a machine that has no copy of the data). None when `model_dir` has no `config.json` or the
  file predates the record (the dataset then tells).

  Raises:
    ValueError: if the file or its record is not valid.
  """
  values = _read_config_file(model_dir)
  record = None if values is None else values.get("data")
  if record is None:
    return None
  try:
    shape, bins = tuple(int(d) for d in record["image_shape"]), int(record["num_bins"])
    if len(shape) != 3 or min(shape) < 1 or bins < 2:
      raise ValueError(f"image_shape {shape}, num_bins {bins}")
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"{os.path.join(model_dir, CONFIG_FILE)} has an invalid data record "
                     f"({type(e).__name__}: {e}); use another --model_dir.") from None
  return shape, bins


def _read_config_file(model_dir):
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      values = json.load(f)
    if not isinstance(values, dict):
      raise ValueError("not a JSON object")
    return values
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a valid lcflow_tf run config ({type(e).__name__}: {e}); "
                     "use another --model_dir.") from None


def write_train_config(model_dir, config, image_shape=None, num_bins=None):
  """Writes `config` as `model_dir/config.json` (atomically).

  Args:
    model_dir: the run's directory.
    config: the `TrainConfig`.
    image_shape: the data's image shape, recorded under "data" so that the model can be
      rebuilt without the dataset (`read_data_record`); given together with `num_bins` or not
      at all.
    num_bins: the data's integer levels, recorded under "data" beside `image_shape`; given
      together with `image_shape` or not at all.
  """
  values = {"train": config.to_dict()}
  if image_shape is not None:
    values["data"] = {"image_shape": [int(d) for d in image_shape], "num_bins": int(num_bins)}
  files.write_json_atomic(os.path.join(model_dir, CONFIG_FILE), values)


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
