"""What older versions of lcflow_tf wrote, read as today's runs, configs and exports.

The rest of the library describes today's model only; this module is the one place that knows
how the files of older versions differ from today's, and reads them as what they were:

* `config.json` (`train_config_dict`, which `config.TrainConfig.from_dict` applies first):
  fields that runs were saved without (`ADDED_FIELDS`) take the values that reproduce how
  such a run was trained, and fields saved under another name (`RENAMED_FIELDS`, and a
  `nosplit` pilot sub-run's `model.pilot_junction`) take today's. The format may be the flat
  one (the model's fields beside the others, as `TrainConfig.to_flags` names them) or today's
  nested one; fields missing otherwise take their defaults, which reproduce those runs.
* Flat names (`renamed`, which `TrainConfig.from_flags` applies): the older names of renamed
  fields keep working, as train.py's flags keep them as aliases.
* Resuming such a run with train.py (`inherit_unset`): the added fields keep the run's values
  unless their flags are given.
* `FlowModel` configs (`.keras` files) whose flow names a pilot's junction (`flow_model_config`).
* SavedModels whose Keras 3 network variables only `tf.saved_model.load` restores
  (`upgrade_saved_model`).
Checkpoints without weight averages need nothing here: `lcflow_tf.checkpoints` restores them
for any run that turns averaging on when it resumes (`ema_decay` may change then).
"""

import tensorflow as tf

from lcflow_tf import export
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import schedules


def unbounded_values(architecture="glow", scale_fn=None):
  """The soft-bound fields (`flows.BOUND_FIELDS`) of a model saved without them.

  Glow's sigmoid scale, the shift and the split prior were unbounded; the tanh scale was
  bounded by 2.
  """
  scale_fn = scale_fn or flows.original_scale_fn(architecture)
  return {"max_log_scale": 0.0 if scale_fn == "sigmoid" else 2.0, "max_shift": 0.0,
          "max_log_sigma": 0.0}


def model_values(architecture="glow", scale_fn=None):
  """The `FlowConfig` fields of `ADDED_FIELDS` for a model of `architecture` saved without them:
  unbounded couplings and split prior (`unbounded_values`), He-normal conditioners, and the
  architecture's original scale function (`scale_fn=None`: Glow's sigmoid, RealNVP's tanh)."""
  return dict(unbounded_values(architecture, scale_fn), network_init="he_normal",
              scale_fn=scale_fn)


# Fields (flat names) that runs were saved without, with the values that reproduce how such a
# run was trained: a constant learning rate after the warm-up, no weight averages (the floor
# does not matter then), the model of `model_values` (of a Glow; `train_config_dict` takes the
# run's architecture), the `static` pilot, not the budget-matched control.
ADDED_FIELDS = {"lr_schedule": "constant", "lr_min_ratio": schedules.DEFAULT_MIN_RATIO,
                "ema_decay": 0.0, **model_values(), "lc_pilot": "static",
                "budget_matched_control": False}
# The model's fields among them (saved under "model" in the nested format).
_MODEL_FIELDS = frozenset(model_values())
# Fields saved under another name: {name then: name now}.
RENAMED_FIELDS = {"static_pilots": "budget_matched_control"}


def renamed(values):
  """A dict of flat `TrainConfig` names with each `RENAMED_FIELDS` name given today's (unless
  both are given); `TrainConfig.from_flags` applies it, so the older names keep working."""
  values = dict(values)
  for old, new in RENAMED_FIELDS.items():
    if old in values and new not in values:
      values[new] = values.pop(old)
  return values


def train_config_dict(values):
  """A `TrainConfig` dict (config.json's "train") of any version, in today's fields.

  The format is kept (flat or nested). Renamed fields take today's names; a `nosplit` pilot
  sub-run's `model.pilot_junction` becomes `open_junctions_from`. Missing `ADDED_FIELDS`
  take their values: in the flat format all of them (the model's by the run's architecture
  and scale function), in the nested one those outside the model (nested files hold every
  model field).

  Args:
    values: the dict, flat (`TrainConfig.to_flags` names) or nested (`to_dict`).

  Returns:
    A new dict; `values` is left as it is.
  """
  values = renamed(values)
  if "model" not in values:  # flat
    model = model_values(values.get("architecture", "glow"), values.get("scale_fn"))
    return {**ADDED_FIELDS, **model, **values}
  model = values["model"]
  if isinstance(model, dict) and "pilot_junction" in model:
    model = dict(model)
    junction = model.pop("pilot_junction")
    values["model"] = model
    if junction is not None:
      values.setdefault("open_junctions_from", junction)
  return dict({name: value for name, value in ADDED_FIELDS.items()
               if name not in _MODEL_FIELDS}, **values)


def inherit_unset(config, saved, given):
  """`config` with the `ADDED_FIELDS` that are not in `given` taken from `saved`.

  train.py resumes a run with the learning-rate schedule, weight averaging, soft bounds,
  conditioner initialisation and pilot settings it was started with (for a run saved without
  these fields: `ADDED_FIELDS`) unless their flags are given.

  Args:
    config: the `TrainConfig` built from the flags.
    saved: the `TrainConfig` of the run being resumed, or None (a new run: `config`).
    given: flat names of the fields set explicitly (flags given on the command line).
  """
  if saved is None:
    return config
  kept = saved.to_flags()
  return type(config).from_flags(**dict(config.to_flags(), **{
      name: kept[name] for name in ADDED_FIELDS if name not in given}))


def flow_model_config(config):
  """A `FlowModel.get_config()` dict of any version in today's form.

  A flow config with `pilot_junction` (a `nosplit` pilot model, or None) gives the model's
  `open_junctions_from` instead.
  """
  flow = config.get("flow")
  if not isinstance(flow, dict) or "pilot_junction" not in flow:
    return config
  flow = dict(flow)
  junction = flow.pop("pilot_junction")
  config = dict(config, flow=flow)
  if junction is not None:
    config.setdefault("open_junctions_from", junction)
  return config


def upgrade_saved_model(old_dir, export_dir, overwrite=False, version=None):
  """Re-saves an export so that the session-based loaders can run it.

  An export whose Keras 3 network variables are saved as the Keras objects (as lcflow_tf
  wrote them before `export.plain_variables`) loads with `tf.saved_model.load` but not with
  `tf.compat.v1.saved_model.loader.load`, `saved_model_cli run` or TensorFlow Serving (those
  variables are never restored there). Loaded with `tf.saved_model.load`, every variable is a
  plain `tf.Variable` that its signatures read, so saving the loaded object again gives a
  SavedModel with the same signatures and outputs that every loader runs. Needs neither the
  training run nor its checkpoint; written atomically like `export.export_saved_model`.

  Args:
    old_dir: the export to upgrade (left as it is).
    export_dir: destination directory; with `version`, TensorFlow Serving's model base path.
    overwrite: replace an existing destination.
    version: None, or an int >= 1 (see `export.export_saved_model`).

  Returns:
    The SavedModel directory written (absolute).

  Raises:
    ValueError: if `old_dir` is not a SavedModel, cannot be loaded, or lacks one of
      `export.SIGNATURES`; or the destination fails `export.check_export_dir` (it must
      neither be nor contain `old_dir`).
  """
  caller = "upgrade_saved_model"
  if not old_dir or not tf.saved_model.contains_saved_model(old_dir):
    raise ValueError(f"{caller}: {old_dir!r} is not a SavedModel directory (no saved_model.pb "
                     "in it); give the directory of an lcflow_tf export.")
  target = export.check_export_dir(export_dir, overwrite, protect=[old_dir], version=version,
                                   caller=caller, protected="the export being upgraded")
  try:
    loaded = tf.saved_model.load(old_dir)
  except (tf.errors.OpError, ValueError, OSError) as e:
    first = (str(e).strip().splitlines() or [""])[0]
    raise ValueError(f"{caller}: cannot load {old_dir} with tf.saved_model.load "
                     f"({type(e).__name__}: {first}).") from e
  missing = [name for name in export.SIGNATURES if name not in loaded.signatures]
  if missing:
    raise ValueError(f"{caller}: {old_dir} is not an lcflow_tf export: it lacks the "
                     f"signatures {missing} (it has {sorted(loaded.signatures)}).")
  signatures = {name: loaded.signatures[name] for name in export.SIGNATURES}
  files.replace_dir_atomically(
      target, lambda path: tf.saved_model.save(loaded, path, signatures=signatures))
  return target
