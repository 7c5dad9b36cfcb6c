"""The benchmark scripts run end to end (`--smoke`) and their results hold together."""

import contextlib
import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import ablation
from benchmarks import heldout_spread
from benchmarks import intervals
from benchmarks import lc_anatomy
from benchmarks import log_det_cost
from benchmarks import noise_floor
from benchmarks import paired_spread
from benchmarks import peer_glow
from benchmarks import peer_models
from benchmarks import peer_protocol
from benchmarks import peer_report
from benchmarks import profile_step
from benchmarks import robustness
from benchmarks import round_trip_anatomy
from benchmarks import scaling
from benchmarks import split_study
from benchmarks import training_trace
from lcflow_tf import config as config_lib
from lcflow_tf import data as lf_data
from lcflow_tf import flows as lf_flows
from lcflow_tf import schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_python():
  """(Python of the PyTorch peer venv, None) or (None, why it is not usable)."""
  python = os.environ.get(peer_glow.TORCH_PYTHON_ENV) or peer_glow.DEFAULT_TORCH_PYTHON
  if not os.path.isfile(python):
    return None, (f"no PyTorch peer venv at {python} (install it as docs/benchmarks.md says, "
                  f"or set ${peer_glow.TORCH_PYTHON_ENV})")
  proc = subprocess.run([python, "-c", "import normflows, torch"], capture_output=True,
                        text=True, timeout=120)
  if proc.returncode != 0:
    return None, f"{python} cannot import normflows and torch: {proc.stderr[-300:]}"
  return python, None


def run_smoke(script, results_dir, *args):
  args = args or ("--smoke",)
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", script), *args, "--results_dir",
       str(results_dir)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def run_main(module, results_dir, *args):
  """Runs benchmark `module`'s `main()` in this process as `python benchmarks/<module>.py ARGS
  --results_dir RESULTS_DIR` would; returns what it printed.

  This process has imported TensorFlow already: a TensorFlow start-up less per call (15-30 s
  on two busy cores). A script's workers (`--worker`) still run in their own processes, as
  in a real run; scripts that measure their own process (peak RSS, timings) use `run_smoke`.
  """
  script = os.path.join(ROOT, "benchmarks", module.__name__.rsplit(".", 1)[1] + ".py")
  argv, sys.argv = sys.argv, [script, *map(str, args), "--results_dir", str(results_dir)]
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      module.main()
  finally:
    sys.argv = argv
  return out.getvalue()


def load(results_dir, name):
  with open(os.path.join(results_dir, name + ".json")) as f:
    record = json.load(f)
  assert os.path.isfile(os.path.join(results_dir, name + ".md"))
  return record


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
  # The main in this process (`run_main`): it times only a reference matmul; the configuration
  # is built, timed and measured (peak RSS) in its own worker process, as in a real run.
  run_main(scaling, tmp_path, "--smoke")
  record = load(tmp_path, "scaling_smoke")
  (row,) = record["rows"]
  assert row["image"] == "8x8x3" and row["K"] == 1 and row["finite loss"]
  assert row["conv GFLOP/step (profiler)"] == pytest.approx(row["conv GFLOP/step (analytic)"],
                                                            rel=1e-9)
  assert row["conv GFLOP/step (profiler)"] < row["GFLOP/step"]
  assert row["GFLOP/s"] == pytest.approx(row["GFLOP/step"] / (row["ms/step"] / 1000.0))
  assert 0 < row["% of matmul FLOP/s"] < 100
  assert row["peak RSS MB"] > row["peak above start MB"] > 0
  assert row["peak RSS incl. FLOP count MB"] >= row["peak RSS MB"]


@pytest.mark.slow
def test_ablation_tiny(tmp_path):
  """ablation.py end to end on digits at its smoke size (Glow K=1 width 8; static and lc: three
  runs of 4 steps, each its own worker process), then lc_anatomy and heldout_spread on two of
  its runs, then the reuse of its records. The scripts' `main`s run in this process
  (`run_main`); only the workers start TensorFlow."""
  args = ("--smoke", "--architectures", "glow", "--splits", "static,lc", "--seeds", "0",
          "--train_steps", "4", "--workdir", str(tmp_path / "runs"))
  run_main(ablation, tmp_path, *args)
  record = load(tmp_path, "ablation_digits_smoke_glow")  # a subset: named after it
  assert record["command"] == ("python benchmarks/ablation.py --smoke --architectures glow "
                               "--splits static,lc --seeds 0 --train_steps 4 --workdir "
                               f"{tmp_path}/runs")
  rows = {r["split"]: r for r in record["rows"]}
  assert set(rows) == {"static", "lc", "lc+reinit"}
  for row in rows.values():
    assert 0 < row["test bpd mean"] < 40 and row["std"] == 0.0
  assert rows["static"]["kept as static"] == "1.00"  # the static split keeps its own half
  diff = rows["lc"]["test bpd mean"] - rows["static"]["test bpd mean"]  # paired, one seed
  assert rows["lc"]["vs static"] == f"{diff:+.3f} (lower on {int(diff < 0)}/1)"
  assert "vs static" not in rows["static"]
  kept = [float(v) for v in rows["lc"]["kept as static"].split(", ")]
  assert len(kept) == 1 and 0.0 <= kept[0] <= 1.0  # L=2: one split point
  with open(tmp_path / "ablation_digits_smoke_glow_runs.json") as f:
    assert len(json.load(f)) == 3
  assert os.listdir(tmp_path / "figures")  # LC heatmaps of the seed-0 lc run

  # lc_anatomy on two of those runs (static pilot: one `model` row per run and junction)
  runs = tmp_path / "runs" / "ablation_digits_smoke"
  run_main(lc_anatomy, tmp_path, runs / "glow_static_seed0", runs / "glow_lc_seed0",
           "--max_images", "40")
  anatomy = load(tmp_path, "lc_anatomy")["rows"]
  assert [(r["rule"], r["source"], r["junction"]) for r in anatomy] == [
      ("static", "model", 1), ("lc@static", "model", 1)]
  # the static run was trained with the identity order at every location of the 4x4x4 split
  assert anatomy[0]["trained split"] == "keeps [0, 1], factors out [2, 3] at 16/16 locations"
  assert anatomy[0]["kept sets"] == 1 and anatomy[0]["kept as static"] == 1.0
  for row in anatomy:
    assert len(json.loads(row["mean log N(h) per channel"])) == 4
    assert len(json.loads(row["mean A per channel"])) == 4

  # heldout_spread on the same runs: its mean is the ablation's test bits/dim (same noise)
  run_main(heldout_spread, tmp_path, runs / "glow_static_seed0", runs / "glow_lc_seed0")
  spread = load(tmp_path, "heldout_spread")["rows"]
  assert [r["run"] for r in spread] == ["glow_static_seed0", "glow_lc_seed0"]
  for row, split in zip(spread, ("static", "lc")):
    assert row["mean"] == pytest.approx(rows[split]["test bpd mean"], rel=1e-4)
    assert row["images"] == 297 and row["median"] <= row["worst image"]
  err = io.StringIO()
  with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
    run_main(heldout_spread, tmp_path, tmp_path / "no_such_run")  # a usage error, no traceback
  assert exit_info.value.code == 2 and "no_such_run has no config.json" in err.getvalue()

  # robustness on one of the runs, round trips also in a float64 copy (Flow.astype)
  run_main(robustness, tmp_path, runs / "glow_static_seed0", "--num_samples", 8,
           "--round_trip_dtypes", "float32,float64", "--name", "robustness_tiny")
  (row,) = load(tmp_path, "robustness_tiny")["rows"]
  assert row["round trip images"] == row["round trip images (float64)"] == 297
  assert row["round trip max error (float64)"] < 1e-9 < row["round trip max error"] < 1e-3
  assert row["round trips losing a pixel (float64)"] == row["round trips losing a pixel"] == 0
  err = io.StringIO()
  with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
    run_main(robustness, tmp_path, runs / "glow_static_seed0", "--round_trip_dtypes", "half")
  assert exit_info.value.code == 2 and (
      "--round_trip_dtypes must be a comma-separated list from ['float32', 'float64'], got "
      "'half'") in err.getvalue()

  # round_trip_anatomy on two of its images: a summary row, then every layer in encode order
  run_main(round_trip_anatomy, tmp_path, runs / "glow_static_seed0", "--images", "3,0",
           "--name", "round_trip_anatomy_tiny")
  rows = load(tmp_path, "round_trip_anatomy_tiny")["rows"]
  summaries = [r for r in rows if r["layer"] == "(whole round trip)"]
  assert [r["image"] for r in summaries] == [3, 0]
  assert all(r["float64 round trip error"] < 1e-9 < r["float32 round trip error"] < 1e-3
             for r in summaries)
  assert all(r["float64 round trip error"] < r["float32 encode, float64 decode error"] < 1e-3
             for r in summaries)
  layers = [r["layer"] for r in rows if r["image"] == 3][1:]
  assert layers[0] == "level0_squeeze" and layers[-1] == "level0_unsqueeze_inner"
  assert layers.index("level0_step0_coupling") < layers.index("level1_step0_coupling")
  by_layer = {r["layer"]: r for r in rows[1:len(layers) + 1]}
  # rounding the latent (the last layer's output) in the float64 copy is seen in the image
  assert by_layer["level0_unsqueeze_inner"]["error if rounded here"] > 100 * (
      summaries[0]["float64 round trip error"])
  for r in by_layer.values():
    assert 0 <= r["error if rounded here"] < 1e-3 and r["max |output|"] > 0
    assert ("decode gain" in r) == r["layer"].endswith("coupling")
    assert r.get("decode gain", 1.0) >= 1.0
  with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
    run_main(round_trip_anatomy, tmp_path, runs / "glow_static_seed0", "--images", "297")
  assert exit_info.value.code == 2 and (
      "--images must be test-set indices below 297, got 297.") in err.getvalue()

  # Every run left a record of its configuration and result. Another configuration is
  # retrained from scratch (its stale run folder removed); a rerun without run folders (a
  # fresh clone) reuses the records and trains nothing.
  records = tmp_path / "ablation_runs" / "ablation_digits_smoke"
  assert sorted(os.listdir(records)) == ["glow_lc_reinit_seed0.json", "glow_lc_seed0.json",
                                         "glow_static_seed0.json"]
  with open(records / "glow_lc_reinit_seed0.json") as f:
    stored = json.load(f)
  config = stored["config"]
  assert (config["split"], config["lc_reinit"], config["train_steps"]) == ("lc", True, 4)
  # ... and the complete configuration it was trained with (the defaults included)
  assert stored["result"]["train_config"] == ablation.resolved_config(config).to_dict()
  assert (config["steps_per_level"], config["hidden_channels"]) == (1, 8)  # the smoke size
  # The retraining, with a stand-in worker (the real one trained the runs above): it gets the
  # new configuration in an emptied run folder, and its result replaces the stale record.
  with open(records / "glow_static_seed0.json") as f:
    config = dict(json.load(f)["config"], train_steps=5)
  worker = tmp_path / "worker.py"
  worker.write_text("import json, os, sys\n"
                    "spec = json.load(open(sys.argv[2]))\n"
                    "files = sorted(os.listdir(spec['model_dir']))\n"
                    "with open(os.path.join(spec['model_dir'], 'result.json'), 'w') as f:\n"
                    "  json.dump({'steps': spec['config']['train_steps'], 'saw': files}, f)\n")
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    retrained = ablation.recorded_or_trained(config, str(runs / "glow_static_seed0"),
                                             str(records / "glow_static_seed0.json"),
                                             script=str(worker))
  assert "[glow_static_seed0] training 5 steps" in out.getvalue()
  assert retrained["result"] == {"steps": 5, "saw": ["spec.json"]}  # no stale checkpoint
  with open(records / "glow_static_seed0.json") as f:
    assert json.load(f) == retrained
  shutil.rmtree(runs)
  assert "training" not in run_main(ablation, tmp_path, *args[:3], "--splits", "lc",
                                    *args[5:])
  def results_of(rows):
    return [(r["split"], r["per seed"], r["kept as static"]) for r in rows]
  assert results_of(load(tmp_path, "ablation_digits_smoke_glow")["rows"]) == results_of(
      r for r in record["rows"] if r["split"] != "static")


@pytest.mark.slow
def test_split_study_tiny_and_its_anatomy(tmp_path):
  """The study's machinery end to end on digits (Glow L=3 at the smoke size, K=1 width 8: two
  nosplit pilots), then
  lc_anatomy on its nosplit runs: a row per pilot, whose kept order is the model's (the
  budget-matched control too, whose static rule reads no score). The mains run in this
  process (`run_main`); the training runs are split_study's worker processes."""
  args = ("--smoke", "--rows", "static,logdet@nosplit,static@nosplit", "--train_steps", "8",
          "--workdir", str(tmp_path / "runs"))
  run_main(split_study, tmp_path, *args)
  record = load(tmp_path, "split_study_digits_l3_smoke")
  rows = {r["row"]: r for r in record["rows"]}
  assert set(rows) == {"static", "logdet@nosplit", "static@nosplit"}
  assert rows["static"]["kept as static"] == "1.00, 1.00"  # two junctions
  diff = rows["logdet@nosplit"]["test bpd mean"] - rows["static"]["test bpd mean"]
  paired = rows["logdet@nosplit"]["paired"]
  assert paired["n"] == 1 and paired["low"] is None and paired["lower"] == int(diff < 0)
  assert paired["mean"] == pytest.approx(diff)
  records = tmp_path / "split_study_runs" / "split_study_digits_l3_smoke"
  with open(records / "glow_logdet_at_nosplit_seed0.json") as f:
    config = json.load(f)["config"]
  assert (config["split"], config["lc_pilot"], config["lc_pilot_steps"], config["levels"]) == (
      "logdet", "nosplit", 2, 3)
  assert (config["steps_per_level"], config["hidden_channels"]) == (1, 8)  # the smoke size
  run = tmp_path / "runs" / "split_study_digits_l3_smoke" / "glow_logdet_at_nosplit_seed0"
  assert {"pilot_0", "pilot_1"} <= set(os.listdir(run))
  run_main(lc_anatomy, tmp_path, run, "--max_images", "40")
  anatomy = load(tmp_path, "lc_anatomy")["rows"]
  assert [(r["source"], r["junction"]) for r in anatomy] == [
      ("model", 1), ("model", 2), ("pilot 0", 1), ("pilot 1", 2)]
  assert [len(json.loads(r["mean A per channel"])) for r in anatomy] == [4, 8, 4, 8]
  assert anatomy[2]["trained split"] == anatomy[0]["trained split"]
  assert "kept by rule on held-out" in anatomy[2]
  control = run.parent / "glow_static_at_nosplit_seed0"
  run_main(lc_anatomy, tmp_path, control, "--max_images", "40")
  anatomy = load(tmp_path, "lc_anatomy")["rows"]
  assert [(r["rule"], r["source"]) for r in anatomy] == [
      ("static@nosplit", "model"), ("static@nosplit", "model"),
      ("static@nosplit", "pilot 0"), ("static@nosplit", "pilot 1")]
  assert all(r["kept as static"] == 1 and not r.get("kept by rule on held-out")
             for r in anatomy)


def test_stored_runs_with_other_library_defaults_are_not_reused(tmp_path):
  """A record keeps its complete configuration; reused only while the defaults still give it."""
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  cfg = ablation.run_config(ablation.SIZES["digits"], "digits", "glow", "static", False, 0)
  complete = ablation.resolved_config(cfg).to_dict()
  record_path = tmp_path / "run.json"
  record = {"config": cfg, "machine": {}, "result": {"test_bits_per_dim": 2.5,
                                                     "train_config": complete}}
  record_path.write_text(json.dumps(record))
  assert ablation.recorded_or_trained(cfg, str(tmp_path / "run"), str(record_path)) == record
  assert "conv1x1" not in cfg  # a field the benchmark leaves to the library's default
  then = config_lib.TrainConfig.from_dict(complete)
  then = dataclasses.replace(then, model=dataclasses.replace(then.model, conv1x1="matrix"))
  record["result"]["train_config"] = then.to_dict()
  record_path.write_text(json.dumps(record))
  with pytest.raises(SystemExit, match=r"run\.json was trained with other defaults \(conv1x1="
                                       r"'matrix' then but 'lu' now\); delete it to retrain"):
    ablation.recorded_or_trained(cfg, str(tmp_path / "run"), str(record_path))
  record["result"]["train_config"] = dict(complete, removed_field=1)  # a later library's view
  record_path.write_text(json.dumps(record))
  with pytest.raises(SystemExit, match=r"run\.json was trained with a configuration this "
                                       r"library cannot read \(.*removed_field.*\); delete it"):
    ablation.recorded_or_trained(cfg, str(tmp_path / "run"), str(record_path))
  del record["result"]["train_config"]  # records before 2026-12-04: explicit fields only
  record_path.write_text(json.dumps(record))
  assert ablation.recorded_or_trained(cfg, str(tmp_path / "run"), str(record_path)) == record


def test_a_stored_run_without_an_asked_measurement_goes_back_to_the_worker(tmp_path,
                                                                          monkeypatch):
  """A run whose worker stopped after training (result.json without the sample quality that
  `extra` asks for) is neither reused nor trained again: the worker measures what is missing."""
  cfg = ablation.run_config(ablation.SIZES["digits"], "digits", "glow", "static", False, 0)
  run = tmp_path / "run"
  run.mkdir()
  trained = {"test_bits_per_dim": 2.5}
  (run / "result.json").write_text(json.dumps(trained))
  record_path = tmp_path / "record.json"
  record_path.write_text(json.dumps({"config": cfg, "machine": {}, "result": trained}))
  extra = {"sample_quality": {"temperatures": [1.0], "num_samples": 10}}
  worker = tmp_path / "worker.py"  # stands in for split_study's worker: adds the measurement
  worker.write_text("import json, os, sys\n"
                    "spec = json.load(open(sys.argv[2]))\n"
                    "path = os.path.join(spec['model_dir'], 'result.json')\n"
                    "result = dict(json.load(open(path)), sample_quality=spec['sample_quality'])\n"
                    "json.dump(result, open(path, 'w'))\n")
  (run / "spec.json").write_text(json.dumps({"config": cfg}))
  with contextlib.redirect_stdout(io.StringIO()):
    record = ablation.recorded_or_trained(cfg, str(run), str(record_path), script=str(worker),
                                          extra=extra)
  assert record["result"] == dict(trained, sample_quality=extra["sample_quality"])
  with open(record_path) as f:
    assert json.load(f) == record
  # without `extra` the same stored result is complete
  assert ablation.recorded_or_trained(cfg, str(run), str(record_path)) == record

  # split_study's worker: a finished run folder is not trained again
  def no_training(spec_path):
    raise AssertionError(f"trained {spec_path} again")
  monkeypatch.setattr(ablation, "run_worker", no_training)
  spec = tmp_path / "spec.json"
  spec.write_text(json.dumps({"config": cfg, "model_dir": str(run)}))
  split_study.run_worker(str(spec))  # nothing asked beyond the result: nothing done
  os.remove(run / "result.json")
  with pytest.raises(AssertionError, match="trained .* again"):
    split_study.run_worker(str(spec))


def test_split_study_control_row_is_static_through_the_pilots():
  """`static@nosplit` is the budget-matched control: the static split with the nosplit pilots
  (same pilot steps as the data-dependent rows); `static` has no pilot."""
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  sizes = split_study.SETTINGS["digits_l3"]["sizes"]
  configs = {}
  for label in ("static", "static@nosplit", "lc@nosplit"):
    split, pilot = split_study.ROWS[label]
    cfg = split_study.run_config(sizes, "digits", "glow", split, pilot, 0,
                                 static_pilots=label in split_study.CONTROL_ROWS)
    configs[label] = config_lib.TrainConfig.from_flags(**cfg)
  assert configs["static"].pilot_steps_total == 0 and not configs["static"].static_pilots
  control, lc_row = configs["static@nosplit"], configs["lc@nosplit"]
  assert control.static_pilots and control.model.split == "static"
  assert control.pilot_steps_total == lc_row.pilot_steps_total == 600  # 2 pilots of 300
  assert control.differences(lc_row, ignore=()) == [("split", "static", "lc"),
                                                    ("static_pilots", True, False)]
  table = [dict(architecture="glow", row=label) for label in
           ("static", "lc@nosplit", "static@nosplit", "lc@static")]
  per_row = {"static": [1.0, 2.0], "lc@nosplit": [1.5, 2.25], "static@nosplit": [1.25, 2.5],
             "lc@static": [1.0, 1.0]}
  split_study.add_paired(table, per_row, "glow")
  rows = {r["row"]: r for r in table}
  assert "paired" not in rows["static"] and rows["lc@nosplit"]["paired"]["mean"] == 0.375
  assert rows["lc@nosplit"]["paired_control"]["mean"] == 0.0  # (0.25 - 0.25) / 2
  assert split_study.CONTROL_COLUMN not in rows["static@nosplit"]
  assert split_study.CONTROL_COLUMN not in rows["lc@static"]  # not trained like the control


@pytest.mark.parametrize("module, rows, runs", [
    (split_study, ("--rows", "static,lc@nosplit"), ["glow_lc_at_nosplit_seed0"]),
    (ablation, ("--architectures", "glow", "--splits", "static,lc"),
     ["glow_lc_seed0", "glow_lc_reinit_seed0"])])
def test_only_the_seed0_runs_draw_figures(tmp_path, monkeypatch, module, rows, runs):
  """A command for later seeds alone (`--seeds 7`) must not overwrite the seed-0 LC heatmaps
  that the docs show: only seed 0's data-dependent runs get a figures spec, in any order."""
  asked = []

  def fake_record(cfg, model_dir, record_path, figures=None, script=None, extra=None):
    del record_path, script, extra  # unused
    asked.append((os.path.basename(model_dir), figures))
    return {"config": cfg, "machine": {"date": "2026-12-05"},
            "result": {"test_bits_per_dim": 4.0 + cfg["seed"], "train_seconds": 1.0,
                       "kept_as_static": [0.5] * (cfg["levels"] - 1)}}
  monkeypatch.setattr(ablation, "recorded_or_trained", fake_record)
  run_main(module, tmp_path, "--smoke", *rows, "--seeds", "7,0", "--workdir", tmp_path / "runs")
  drawn = [(run, figures) for run, figures in asked if figures]
  assert len(asked) == 2 * (len(runs) + 1)  # static and the data-dependent rows, 2 seeds
  assert [run for run, _ in drawn] == runs
  assert all(f["figures_dir"] == os.path.join(str(tmp_path), "figures") for _, f in drawn)
  assert ablation.figure_spec(str(tmp_path), "x", 7) is None


def test_split_study_recipe_is_pinned_to_its_records():
  """The study trains every setting with the recipe of its committed records (the defaults of
  2026-11-30), whatever the library's defaults become."""
  for setting, arch in (("fashion_l2", "glow"), ("digits_l3", "glow"), ("digits_l3", "realnvp")):
    path = os.path.join(ROOT, "docs", "results", "split_study_runs", f"split_study_{setting}",
                        f"{arch}_static_seed0.json")
    with open(path) as f:
      recorded = json.load(f)["config"]
    spec = split_study.SETTINGS[setting]
    cfg = split_study.run_config(spec["sizes"], spec["dataset"], arch, "static", "nosplit", 0)
    assert cfg == recorded, path


def test_intervals_paired_summary():
  summary = intervals.paired_summary([1.0, 2.0, 3.5], [1.5, 2.0, 3.0])
  # diffs -0.5, 0, 0.5: mean 0, sd 0.5, t(0.975, 2) = 4.302653
  assert summary["n"] == 3 and summary["lower"] == 1 and summary["mean"] == 0.0
  assert summary["high"] == pytest.approx(4.302653 * 0.5 / 3 ** 0.5, rel=1e-6)
  assert summary["low"] == pytest.approx(-summary["high"])
  assert split_study.format_paired(summary) == "+0.0000 [-1.2421, +1.2421] (lower on 1/3)"
  assert intervals.paired_summary([1.0], [0.5])["low"] is None


def test_intervals_use_exact_t_quantiles_at_every_sample_size():
  # The old table stopped at 11 degrees of freedom and fell back to the normal 1.96 beyond.
  assert np.isnan(intervals.mean_halfwidth([1.0]))
  values = [0.0, 1.0] * 10  # n = 20, sd 0.5130, t(0.975, 19) = 2.093024
  assert intervals.mean_halfwidth(values) == pytest.approx(
      2.093024 * np.std(values, ddof=1) / 20 ** 0.5, rel=1e-6)
  assert intervals.mean_halfwidth([0.0, 1.0]) == pytest.approx(12.706205 * 0.5 ** 0.5 / 2 ** 0.5,
                                                               rel=1e-6)
  assert intervals.std_interval([1.0]) == ""
  low, high = map(float, intervals.std_interval([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]).split(" - "))
  assert low < np.std([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) < high
  assert (round(low, 3), round(high, 3)) == (0.117, 0.459)  # s = 0.187, 5 degrees of freedom


def test_noise_floor_budget_recipes_keep_their_size_but_not_under_smoke():
  cfg = noise_floor.recipe_config("steps_6000", "fashion_mnist", 0, False)
  assert (cfg["train_steps"], cfg["checkpoint_every"], cfg["log_every"]) == (6000, 6000, 1500)
  assert noise_floor.recipe_config("warmup_1000", "fashion_mnist", 0, False)["warmup_steps"] == 1000
  smoke = noise_floor.recipe_config("steps_6000", "digits", 0, False, smoke=True)
  assert smoke["train_steps"] == ablation.SMOKE["train_steps"]
  per_recipe = {"default": [4.6, 4.5, 4.7], "steps_6000": [4.4, 4.4, 4.5], "main": [5.0]}
  # differences -0.2, -0.1, -0.2: mean -0.1667, sd 0.0577, t(2) = 4.303 -> half-width 0.1434
  assert (noise_floor.paired_to_default(per_recipe, "steps_6000")
          == "-0.1667 +- 0.1434 (lower on 3/3)")
  assert [noise_floor.paired_to_default(per_recipe, r) for r in ("default", "main")] == ["", ""]
  assert noise_floor.paired_to_default({"steps_6000": [1.0, 2.0]}, "steps_6000") == ""


@pytest.mark.slow
def test_noise_floor_smoke_and_raw_weights(tmp_path):
  # One seed and no twin (a twin is the same worker on cpu_replicas=2, which the training
  # tests cover): each worker is a TensorFlow process.
  # At the ablation's smoke size (K=1, width 8).
  args = ("--smoke", "--dataset", "digits", "--recipes", "default", "--seeds", "0",
          "--perturb_seeds", "", "--train_steps", "2", "--workdir", str(tmp_path / "runs"),
          "--table", "subset")
  run_main(noise_floor, tmp_path, *args)  # in this process; its worker is a TF process
  (row,) = load(tmp_path, "subset")["rows"]
  assert os.path.isfile(tmp_path / "subset_runs.json")
  assert row["seeds"] == 1 and row["per twin (2 replicas)"] == ""
  assert len(row["raw weights per seed"].split(", ")) == 1  # the default recipe keeps averages
  runs = tmp_path / "noise_floor_runs" / "noise_floor_digits_smoke"
  assert os.listdir(runs) == ["default_seed0.json"]
  # A record from before the raw column: filled in from the run's checkpoint.
  path = str(runs / "default_seed0.json")
  with open(path) as f:
    record = json.load(f)
  expected = record["result"].pop("test_bits_per_dim_raw")
  filled = noise_floor.with_raw(record, path, str(tmp_path / "runs" /
                                                  "noise_floor_digits_smoke" / "default_seed0"))
  assert filled["result"]["test_bits_per_dim_raw"] == pytest.approx(expected, abs=1e-6)
  with open(path) as f:
    assert json.load(f)["result"]["test_bits_per_dim_raw"] == pytest.approx(expected, abs=1e-6)
