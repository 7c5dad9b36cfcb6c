"""lcflow_tf.compat: what older versions wrote reads as the runs and models they were.

The end-to-end checks (a run of an older main resumed and evaluated, its export upgraded, pilot
sub-runs resumed) are in test_training.py, test_export.py and test_keras_model.py; these are
the dict rules themselves.
"""

import copy

from lcflow_tf import compat
from lcflow_tf import config as config_lib


def test_a_flat_dict_gets_the_added_fields_of_its_architecture():
  flat = {"architecture": "realnvp", "levels": 2, "split": "lc", "train_steps": 10}
  before = copy.deepcopy(flat)
  values = compat.train_config_dict(flat)
  assert flat == before  # the argument is left as it is
  assert (values["max_log_scale"], values["max_shift"], values["max_log_sigma"]) == (
      2.0, 0.0, 0.0)  # RealNVP's tanh scale was bounded by 2, the rest unbounded
  assert values["network_init"] == "he_normal"
  assert (values["lr_schedule"], values["ema_decay"], values["lc_pilot"]) == (
      "constant", 0.0, "static")
  assert values["budget_matched_control"] is False and values["train_steps"] == 10
  glow = compat.train_config_dict({"architecture": "glow"})
  assert glow["max_log_scale"] == 0.0  # Glow's sigmoid scale was unbounded
  assert compat.train_config_dict({"architecture": "glow", "max_shift": 5.0})["max_shift"] == 5.0


def test_a_nested_dict_gets_the_added_run_fields_and_todays_names():
  today = config_lib.TrainConfig().to_dict()
  assert compat.train_config_dict(today) == today  # today's dicts pass unchanged
  older = copy.deepcopy(today)
  for name in ("lc_pilot", "budget_matched_control", "open_junctions_from"):
    del older[name]
  older["static_pilots"] = True
  older["model"]["pilot_junction"] = 1
  values = compat.train_config_dict(older)
  assert "pilot_junction" not in values["model"] and "static_pilots" not in values
  assert (values["open_junctions_from"], values["budget_matched_control"], values["lc_pilot"]) \
      == (1, True, "static")
  assert "pilot_junction" in older["model"]  # the argument is left as it is
  older["model"]["pilot_junction"] = None  # a model, not a pilot
  assert "open_junctions_from" not in compat.train_config_dict(older)
  both = dict(today, static_pilots=True)  # both names: left for the config to refuse
  assert compat.train_config_dict(both)["static_pilots"] is True


def test_inherit_unset_keeps_the_added_fields_of_the_saved_run_unless_given():
  saved = config_lib.TrainConfig.from_flags(lr_schedule="constant", ema_decay=0.0,
                                            network_init="he_normal")
  new = config_lib.TrainConfig.from_flags(levels=3)
  assert compat.inherit_unset(new, None, set()) is new
  kept = compat.inherit_unset(new, saved, {"ema_decay"})
  assert (kept.lr_schedule, kept.model.network_init, kept.ema_decay) == (
      "constant", "he_normal", new.ema_decay)
  assert kept.model.levels == 3  # fields outside ADDED_FIELDS come from the flags


def test_a_flow_model_config_with_a_pilot_junction_gives_open_junctions_from():
  config = {"flow": {"levels": 3, "pilot_junction": 0}, "num_bins": 17}
  assert compat.flow_model_config(config) == {"flow": {"levels": 3}, "num_bins": 17,
                                              "open_junctions_from": 0}
  assert compat.flow_model_config({"flow": {"pilot_junction": None}}) == {"flow": {}}
  today = {"flow": {"levels": 3}, "open_junctions_from": None}
  assert compat.flow_model_config(today) is today


def test_files_of_older_versions_keep_the_scale_they_were_trained_with():
  """Older versions saved `scale_fn=None` (or nothing) for the architecture's own scale: a
  Glow of those files keeps Glow's sigmoid, while today's default (saved explicitly) is tanh."""
  today = config_lib.TrainConfig.from_dict(config_lib.TrainConfig().to_dict())
  assert today.model.scale_fn == "tanh" and today.flow_config((8, 8, 1)).resolved_scale_fn == (
      "tanh")
  older = config_lib.TrainConfig().to_dict()
  older["model"]["scale_fn"] = None
  for values in (older, {"architecture": "glow", "levels": 2}):  # nested with None; flat
    run = config_lib.TrainConfig.from_dict(values)
    assert run.flow_config((8, 8, 1)).resolved_scale_fn == "sigmoid"
  realnvp = config_lib.TrainConfig.from_dict({"architecture": "realnvp", "levels": 2})
  assert realnvp.flow_config((8, 8, 1)).resolved_scale_fn == "tanh"
  saved = config_lib.TrainConfig.from_dict(older)
  resumed = compat.inherit_unset(config_lib.TrainConfig(), saved, set())
  assert resumed.model.scale_fn is None  # train.py resumes it as the sigmoid Glow it was
