"""The benchmark scripts run end to end (`--smoke`) and their results hold together."""

import ast
import contextlib
import dataclasses
import io
import json
import math
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.common import intervals
from benchmarks.numerics import noise_floor
from benchmarks.numerics import robustness
from benchmarks.numerics import round_trip_anatomy
from benchmarks.numerics import sample_anatomy
from benchmarks.numerics import training_trace
from benchmarks.peers import peer_glow
from benchmarks.peers import peer_models
from benchmarks.peers import peer_protocol
from benchmarks.peers import peer_report
from benchmarks.peers import peer_seeds
from benchmarks.peers import records as peer_records
from benchmarks.quality import training_curve
from benchmarks.speed import log_det_cost
from benchmarks.speed import profile_step
from benchmarks.speed import scaling
from benchmarks.split import ablation
from benchmarks.split import converged_ranking
from benchmarks.split import heldout_spread
from benchmarks.split import lc_anatomy
from benchmarks.split import paired_spread
from benchmarks.split import split_study
from lcflow_tf import config as config_lib
from lcflow_tf import data as lf_data
from lcflow_tf import flows as lf_flows
from lcflow_tf import schedules
from lcflow_tf import training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_python():
  """(Python of the PyTorch peer venv, None) or (None, why it is not usable)."""
  python = os.environ.get(peer_glow.TORCH_PYTHON_ENV) or peer_glow.DEFAULT_TORCH_PYTHON
  if not os.path.isfile(python):
    return None, (f"no PyTorch peer venv at {python} (install it as docs/questions/peers.md says, "
                  f"or set ${peer_glow.TORCH_PYTHON_ENV})")
  proc = subprocess.run([python, "-c", "import normflows, torch"], capture_output=True,
                        text=True, timeout=120)
  if proc.returncode != 0:
    return None, f"{python} cannot import normflows and torch: {proc.stderr[-300:]}"
  return python, None


def run_smoke(script, results_dir, *args):
  """Runs benchmarks/`script` (e.g. "speed/lc_overhead.py") in its own process."""
  args = args or ("--smoke",)
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", script), *args, "--results_dir",
       str(results_dir)], env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def run_main(module, results_dir, *args):
  """Runs benchmark `module`'s `main()` in this process as `python
  benchmarks/<package>/<module>.py ARGS --results_dir RESULTS_DIR` would; returns what it
  printed.

  This process has imported TensorFlow already: a TensorFlow start-up less per call (15-30 s
  on two busy cores). A script's workers (`--worker`) still run in their own processes, as
  in a real run; scripts that measure their own process (peak RSS, timings) use `run_smoke`.
  """
  script = module.__file__
  argv, sys.argv = sys.argv, [script, *map(str, args), "--results_dir", str(results_dir)]
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out):
      module.main()
  finally:
    sys.argv = argv
  return out.getvalue()


def benchmark_modules():
  """{dotted name: path} of every module under benchmarks/ (a package by its __init__.py)."""
  modules = {}
  for path in sorted(pathlib.Path(ROOT, "benchmarks").rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return modules


def import_graph(modules):
  """{module: set of benchmark modules it imports}: every import statement of its file, at
  module level or inside a function, to the deepest benchmark module it names; plus the
  relative imports found, as "path:line" (scripts run as files cannot use them)."""
  graph, relative = {}, []
  for module, path in modules.items():
    graph[module] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
      if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom):
        if node.level:
          relative.append(f"{path.relative_to(ROOT)}:{node.lineno}")
          continue
        names = [f"{node.module}.{alias.name}" for alias in node.names]
      else:
        continue
      for name in names:
        parts = name.split(".")
        found = next((".".join(parts[:n]) for n in range(len(parts), 0, -1)
                      if ".".join(parts[:n]) in modules), None)
        if found and found != module:
          graph[module].add(found)
  return graph, relative


def find_cycle(graph):
  """A cycle of `graph` as [a, b, ..., a], or None (depth-first search)."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def test_benchmark_imports_have_no_cycle():
  """The benchmark modules import one another without a cycle (function-level imports
  included), never relatively, and `common` imports no other benchmark package."""
  modules = benchmark_modules()
  graph, relative = import_graph(modules)
  assert len(modules) > 30 and "benchmarks.peers.peer_glow" in graph  # the walk found them
  assert not relative, f"relative imports (the scripts run as files): {relative}"
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)
  # what both peer_glow and peer_report read lives below both
  assert {"benchmarks.peers.peer_report", "benchmarks.peers.records"} <= graph[
      "benchmarks.peers.peer_glow"]
  assert "benchmarks.peers.peer_glow" not in graph["benchmarks.peers.peer_report"]
  for module, imports in graph.items():
    if module.startswith("benchmarks.common"):
      assert all(m.startswith("benchmarks.common") for m in imports), (module, imports)
  # the search finds a cycle when there is one (the one peer_report had with peer_glow)
  planted = dict(graph, **{"benchmarks.peers.peer_report": graph[
      "benchmarks.peers.peer_report"] | {"benchmarks.peers.peer_glow"}})
  assert find_cycle(planted) == ["benchmarks.peers.peer_glow", "benchmarks.peers.peer_report",
                                 "benchmarks.peers.peer_glow"]
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


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
  assert record["command"] == ("python benchmarks/split/ablation.py --smoke --architectures glow "
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
  assert exit_info.value.code == 2 and "no_such_run does not exist" in err.getvalue()

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

  # sample_anatomy: the latent, then every layer once, in decode order, and the summary
  run_main(sample_anatomy, tmp_path, runs / "glow_static_seed0", "--samples", "8", "--name",
           "sample_anatomy_tiny")
  decoding = load(tmp_path, "sample_anatomy_tiny")
  decoded = [r["layer"] for r in decoding["rows"]]
  assert decoded[0] == "(latent z)" and sorted(decoded[1:]) == sorted(layers)
  assert decoded.index("level1_step0_coupling") < decoded.index("level0_step0_coupling")
  assert all(r["median max |output|"] <= r["largest max |output|"] for r in decoding["rows"])
  assert all(r["median gain"] > 0 for r in decoding["rows"][1:])
  summary = decoding["details"]
  assert summary["samples"] == 8 and summary["non-finite samples"] == 0
  assert 0 <= summary["pixels outside [-1, 2]"] <= 1
  with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
    run_main(sample_anatomy, tmp_path, tmp_path / "missing")
  assert exit_info.value.code == 2 and "does not exist" in err.getvalue()

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
  # --rankings: what lc and logdet keep from each row's own values; logdet's from a pilot is
  # what the run's (logdet) rule kept.
  run_main(lc_anatomy, tmp_path, run, "--max_images", "40", "--rankings", "lc,logdet")
  ranked = load(tmp_path, "lc_anatomy")["rows"]
  for row in ranked:
    assert {"lc keeps on held-out", "lc keeps as static", "logdet keeps on held-out",
            "logdet keeps as static"} <= set(row)
  assert ranked[2]["logdet keeps on held-out"] == ranked[2]["kept by rule on held-out"]
  with pytest.raises(SystemExit):
    run_main(lc_anatomy, tmp_path, run, "--rankings", "lc,best")
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
  from lcflow_tf import pilots  # pylint: disable=g-import-not-at-top
  sizes = split_study.SETTINGS["digits_l3"]["sizes"]
  configs = {}
  for label in ("static", "static@nosplit", "lc@nosplit"):
    split, pilot = split_study.ROWS[label]
    cfg = split_study.run_config(sizes, "digits", "glow", split, pilot, 0,
                                 control=label in split_study.CONTROL_ROWS)
    configs[label] = config_lib.TrainConfig.from_flags(**cfg)
  assert pilots.total_steps(configs["static"]) == 0
  assert not configs["static"].budget_matched_control
  control, lc_row = configs["static@nosplit"], configs["lc@nosplit"]
  assert control.budget_matched_control and control.model.split == "static"
  assert pilots.total_steps(control) == pilots.total_steps(lc_row) == 600  # 2 pilots of 300
  assert control.differences(lc_row, ignore=()) == [("split", "static", "lc"),
                                                    ("budget_matched_control", True, False)]
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
    assert cfg["scale_fn"] == ("sigmoid" if arch == "glow" else "tanh")  # the scale of then
    # Records saved without a scale function trained with their architecture's original.
    assert ablation.with_explicit_scale(cfg) == ablation.with_explicit_scale(recorded), path
    assert "scale_fn" not in recorded


def test_records_without_a_scale_function_are_their_architectures_original(tmp_path):
  """A run record saved before the scale function was named is reused for that scale only."""
  cfg = {"architecture": "glow", "seed": 0}
  path, config_path = tmp_path / "result.json", tmp_path / "record.json"
  path.write_text(json.dumps({"test_bits_per_dim": 4.0}))
  config_path.write_text(json.dumps({"config": cfg}))
  assert ablation.stored(str(path), str(config_path), dict(cfg, scale_fn="sigmoid")) == {
      "test_bits_per_dim": 4.0}
  assert ablation.stored(str(path), str(config_path), dict(cfg, scale_fn="tanh")) is None
  config_path.write_text(json.dumps({"config": dict(cfg, architecture="realnvp")}))
  assert ablation.stored(str(path), str(config_path),
                         dict(cfg, architecture="realnvp", scale_fn="tanh")) is not None
  assert ablation.default_recipe("glow")["scale_fn"] == "tanh"


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
  values = [0.0, 1.0] * 10  # n = 20, t(0.975, 19) = 2.093024
  assert intervals.mean_halfwidth(values) == pytest.approx(
      2.093024 * np.std(values, ddof=1) / 20 ** 0.5, rel=1e-6)
  assert intervals.mean_halfwidth([0.0, 1.0]) == pytest.approx(12.706205 * 0.5 ** 0.5 / 2 ** 0.5,
                                                               rel=1e-6)


def test_split_study_cropped_sampler():
  from lcflow_tf import sample_quality  # pylint: disable=g-import-not-at-top
  flow = lf_flows.build_flow((12, 12, 1), levels=2, steps_per_level=1, hidden_channels=4)
  full = sample_quality.flow_sampler(flow)(3, 0.7, 5)
  cropped = split_study.cropped_sampler(flow, (8, 8))(3, 0.7, 5)
  assert cropped.shape == (3, 8, 8, 1)
  np.testing.assert_array_equal(cropped, full[:, 2:10, 2:10])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["speed/lc_overhead.py", "speed/export_latency.py",
                                    "speed/backward_cost.py", "speed/conditioner_speed.py"])
def test_quick_benchmarks_write_results(tmp_path, script):
  """The timing scripts end to end at their smoke size (the code of --quick and of the full
  run, on a tiny model); in their own process, as they time it."""
  run_smoke(script, tmp_path, "--smoke")
  record = load(tmp_path, os.path.basename(script).replace(".py", "_smoke"))
  assert record["command"] == f"python benchmarks/{script} --smoke"
  assert record["machine"]["cores"] >= 1 and record["rows"]


def test_analytic_conv_flops_by_hand():
  # 8x8x3, L=2, K=1, width 8, batch 2. Level 0: 4x4 maps, c=12: coupling 6->8 (3x3),
  # 8->8 (1x1), 8->12 (3x3); prior 6->12 (3x3). Level 1: 2x2 maps, c=24: 12->8, 8->8, 8->24.
  level0 = (9 * 6 * 8 + 8 * 8 + 9 * 8 * 12 + 9 * 6 * 12) * 16
  level1 = (9 * 12 * 8 + 8 * 8 + 9 * 8 * 24) * 4
  assert scaling.analytic_conv_flops(8, 3, 2, 1, 8, 2) == 2 * 2 * (level0 + level1)


def test_stream_export_is_the_training_pipeline(tmp_path, digits):
  meta = peer_protocol.export_stream(str(tmp_path), "digits", batch_size=8, steps=3, seed=5,
                                     eval_seed=7, eval_images=40, eval_batch=16)
  assert (meta["image_shape"], meta["num_bins"], meta["test_images"]) == ([8, 8, 1], 17, 40)
  reader = peer_protocol.StreamReader(str(tmp_path))
  pipeline = lf_data.make_train_pipeline(digits.train(), 8, 17, seed=5)
  for i, expected in enumerate(pipeline.take(3)):
    batch = reader.batch(i)
    np.testing.assert_array_equal(batch, expected.numpy())
    assert meta["checksums"][i] == peer_protocol.checksum(batch)
  assert meta["checksums"][0] != meta["checksums"][1]
  with pytest.raises(IndexError, match="batch 3 of a stream of 3"):
    reader.batch(3)
  reader.close()
  # the test images with the evaluation's noise, independent of the batch size
  test = peer_protocol.load_test(str(tmp_path))
  expected = np.concatenate([x.numpy() for x in lf_data.make_eval_pipeline(
      digits.test().take(40), 256, 17, seed=7)])
  np.testing.assert_array_equal(test, expected)
  assert meta["test_checksum"] == peer_protocol.checksum(test)
  assert peer_protocol.read_meta(str(tmp_path)) == meta


def test_paired_spread_known_answer_and_usage_errors(tmp_path):
  """Two rows over three seeds with hand-computed statistics; a row that follows the reference
  exactly has sd(d) 0 and correlation 1; unusable files are usage errors, no traceback."""
  runs = [dict(architecture="glow", split=split, seed=seed, test_bits_per_dim=value)
          for split, values in (("static", [4.0, 4.2, 4.1]), ("lc", [4.1, 4.3, 4.2]),
                                ("random", [4.3, 4.0, 4.2]))
          for seed, value in enumerate(values)]
  rows = {r["row"]: r for r in paired_spread.paired_rows(runs)}
  assert set(rows) == {"lc", "random"} and rows["lc"]["reference"] == "static"
  assert rows["lc"]["mean diff to reference"] == pytest.approx(0.1)
  assert rows["lc"]["sd(d)"] == pytest.approx(0.0, abs=1e-12)
  assert rows["lc"]["corr over seeds"] == pytest.approx(1.0)
  diffs = [0.3, -0.2, 0.1]
  assert rows["random"]["sd(d)"] == pytest.approx(np.std(diffs, ddof=1))
  assert rows["random"]["95% CI"] == f"+- {4.303 * np.std(diffs, ddof=1) / math.sqrt(3):.3f}"
  assert rows["random"]["corr over seeds"] == pytest.approx(np.corrcoef([4.3, 4.0, 4.2],
                                                                        [4.0, 4.2, 4.1])[0, 1])
  # two references: every other row is paired with both, the second with the first only
  pairs = [(r["row"], r["reference"]) for r in paired_spread.paired_rows(runs, ("static", "lc"))]
  assert pairs == [("lc", "static"), ("random", "static"), ("random", "lc")]
  path = tmp_path / "x_runs.json"
  path.write_text(json.dumps(runs))
  out = run_main(paired_spread, tmp_path, path, "--name", "ps")
  assert "| x_runs.json | glow | lc | static | 3 |" in out
  assert load(tmp_path, "ps")["rows"][0]["row"] == "lc"
  (tmp_path / "no_row_runs.json").write_text(json.dumps([{"architecture": "glow", "seed": 0,
                                                         "test_bits_per_dim": 4.0}]))
  for bad, message in ((tmp_path / "missing.json", "cannot read run records"),
                       (tmp_path / "ps.json", "is not a list of run records"),
                       (tmp_path / "no_row_runs.json", "no_row_runs.json: a run record needs "
                                                       "architecture, seed, test_bits_per_dim "
                                                       "and one of split, row")):
    err = io.StringIO()
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
      run_main(paired_spread, tmp_path, bad)
    assert exit_info.value.code == 2 and message in err.getvalue()


@pytest.mark.parametrize("setting", sorted(split_study.SETTINGS))
def test_paired_spread_reads_the_committed_split_study_records(tmp_path, monkeypatch,
                                                              setting):
  """On each split-study setting's committed run list (rows under `row`), paired with static
  and the budget-matched control: the mean and 95% interval of every pair the study's table
  reports are the table's; the committed paired_spread table is this command's output."""
  monkeypatch.chdir(ROOT)  # the command names the records from the repository's root
  results_dir = os.path.join(ROOT, "docs", "results")
  name = f"split_study_{setting}"
  out = run_main(paired_spread, tmp_path, f"docs/results/{name}_runs.json",
                 "--references", "static,static@nosplit", "--name", f"paired_spread_{name}")
  assert f"| {name}_runs.json | glow | lc@nosplit | static@nosplit |" in out
  rows = {(r["architecture"], r["row"], r["reference"]): r
          for r in load(tmp_path, f"paired_spread_{name}")["rows"]}
  with open(os.path.join(results_dir, f"{name}.json")) as f:
    table = json.load(f)["rows"]
  compared = 0
  for row in table:
    for key, reference in (("paired", "static"), ("paired_control", "static@nosplit")):
      if key not in row:
        continue
      ours = rows[(row["architecture"], row["row"], reference)]
      paired = row[key]
      assert ours["seeds"] == paired["n"] == split_study.SETTINGS[setting]["seeds"]
      assert ours["mean diff to reference"] == pytest.approx(paired["mean"], rel=1e-9)
      assert ours["95% CI"] == f"+- {(paired['high'] - paired['low']) / 2:.3f}"
      compared += 1
  architectures = len(split_study.SETTINGS[setting]["architectures"])
  assert compared == architectures * (6 + 4)  # 6 rows vs static, 4 *@nosplit rule rows vs control
  assert len(rows) == architectures * (6 + 5)  # + lc@static vs the control
  with open(os.path.join(results_dir, f"paired_spread_{name}.json")) as f:
    committed = json.load(f)
  assert committed["command"] == load(tmp_path, f"paired_spread_{name}")["command"]
  assert committed["rows"] == load(tmp_path, f"paired_spread_{name}")["rows"]


def test_peer_protocol_recipe_formulas():
  warmup = schedules.WarmupDecay(1e-3, 200)
  for step in (0, 99, 199, 200, 1999):
    assert peer_protocol.learning_rate(step, 1e-3, 200) == pytest.approx(float(warmup(step)))
  for kind in ("cosine", "linear"):  # the library's schedule, step by step
    rates = [peer_protocol.learning_rate(s, 1e-3, 200, kind, 2000, 0.01) for s in range(2001)]
    ours = schedules.WarmupDecay(1e-3, 200, kind, 2000, 0.01)
    assert rates == pytest.approx([float(ours(s)) for s in range(2001)], rel=1e-5)
    assert rates[1100] == pytest.approx(0.5 * (1e-3 + 1e-5))  # half way after the warm-up
    assert rates[-1] == pytest.approx(1e-5)  # the floor after the last update
    assert all(a >= b for a, b in zip(rates[199:], rates[200:]))
  # a run shorter than its warm-up: warm-up only, as WarmupDecay
  short = schedules.WarmupDecay(1e-3, 200, "cosine", 4, 0.01)
  assert [peer_protocol.learning_rate(s, 1e-3, 200, "cosine", 4, 0.01) for s in range(4)] == (
      pytest.approx([float(short(s)) for s in range(4)], rel=1e-6))
  with pytest.raises(ValueError, match="schedule"):
    peer_protocol.learning_rate(0, 1e-3, 200, "step")
  with pytest.raises(ValueError, match="total_steps"):
    peer_protocol.learning_rate(300, 1e-3, 200, "cosine")
  assert peer_protocol.ema_decay(0.999, 0) == pytest.approx(0.1)
  assert peer_protocol.ema_decay(0.999, 90) == pytest.approx(0.91)
  assert peer_protocol.ema_decay(0.999, 10 ** 6) == 0.999
  log_prob = np.array([-1500.0, 200.0])
  assert peer_protocol.bits_per_dim(log_prob, 784, 256) == pytest.approx(
      lf_flows.log_prob_to_bits_per_dim(log_prob, (28, 28, 1), 256))
  assert peer_protocol.checksum(np.float32([0.1] * 10 + [1e8, -1e8])) == pytest.approx(
      10 * float(np.float32(0.1)), rel=1e-15)
  assert peer_protocol.chunk_plan(95, 20, 30) == [20, 30, 30, 15]
  assert peer_protocol.chunk_bounds([2, 1, 3]) == [(0, 1), (2, 2), (3, 5)]
  recipe = peer_protocol.Recipe(lr_schedule="linear", ema_decay=0.99, grad_clip_norm=5.0)
  assert peer_protocol.Recipe(**json.loads(json.dumps(dataclasses.asdict(recipe)))) == recipe
  assert recipe.describe(100) == (
      "Adam (epsilon 1e-7) 0.001, 200-step linear warm-up, linear decay to 0.01x at step 100, "
      "gradients clipped to global norm 5, weight average (decay 0.99) evaluated")
  for bad, message in ((dict(lr_schedule="step"), "lr_schedule must be one of"),
                       (dict(ema_decay=1.0), r"ema_decay must be in \[0, 1\)"),
                       (dict(grad_clip_norm=0.0), "grad_clip_norm must be None or a number > 0"),
                       (dict(lr_warmup=2.5), "lr_warmup must be an int >= 0"),
                       (dict(optimizer="sgd"), "optimizer must be one of")):
    with pytest.raises(ValueError, match=message):
      peer_protocol.Recipe(**bad)


def test_peer_glow_arguments_rows_and_recipes(capsys):
  _, config = peer_glow.parse_args([])
  assert (config.steps, config.levels, config.steps_per_level, config.width, config.batch,
          config.chunk_steps, config.warmup_steps, config.quality_samples) == (
              2000, 2, 8, 128, 64, 100, 20, 10000)
  assert config.rows == ("best", "identical", "noclip") and config.models == peer_records.MODELS
  assert config.partners == ()
  assert peer_glow.result_name(config) == "peer_glow"
  # the identical recipe is the library's default recipe (lcflow_tf.config.TrainConfig)
  defaults = config_lib.TrainConfig()
  assert (config.recipe.lr_schedule, config.recipe.lr_min_ratio, config.recipe.ema_decay,
          config.recipe.grad_clip_norm, config.recipe.lr_warmup) == (
              defaults.lr_schedule, defaults.lr_min_ratio, defaults.ema_decay,
              defaults.grad_clip_norm, defaults.warmup_steps)
  best, identical, noclip = (config.recipes(r) for r in ("best", "identical", "noclip"))
  assert best["ours"] == identical["tfp"] == identical["normflows"] == config.recipe
  assert best["tfp"] == peer_glow.TFP_EXAMPLE and best["normflows"] == peer_glow.NORMFLOWS_EXAMPLE
  assert (best["normflows"].optimizer, best["normflows"].weight_decay,
          best["normflows"].skip_nonfinite) == ("adamax", 1e-5, True)
  assert (noclip["tfp"].grad_clip_norm, noclip["tfp"].lr_schedule, noclip["tfp"].ema_decay,
          noclip["tfp"].lr_warmup) == (None, "constant", 0.0, 200)
  assert config.recipes("clip1000")["ours"].grad_clip_norm == 1000.0
  worker = config.worker_config("normflows", "best")
  assert worker["recipe"]["optimizer"] == "adamax" and worker["threads"] == 0
  _, other = peer_glow.parse_args(["--quick", "--rows", "noclip,best", "--models", "tfp,ours",
                                   "--lr_schedule", "constant", "--ema_decay", "0",
                                   "--grad_clip_norm", "none", "--tfp_recipe", "identical"])
  assert other.rows == ("best", "noclip") and other.models == ("ours", "tfp")
  assert other.recipe.grad_clip_norm is None and other.recipes("best")["tfp"] == other.recipe
  assert peer_glow.result_name(other) == (
      "peer_glow_quick_constant_ema0_clipnone_tfpidentical")
  assert (peer_records.record_key(other, "ours", "best")
          != peer_records.record_key(config, "ours", "best"))
  for bad in (["--rows", "best,worst"], ["--models", ""], ["--ema_decay", "1"],
              ["--lr_min_ratio", "2"], ["--torch_threads", "-1"], ["--grad_clip_norm", "-3"],
              ["--steps", "10", "--warmup_steps", "10"], ["--temperatures", "0.5,-1"],
              ["--lr_schedule", "step"], ["--quality_samples", "1"],
              ["--models", "ours,normflows", "--partners", "ours"], ["--partners", "torch"]):
    with pytest.raises(SystemExit):
      peer_glow.parse_args(bad)
  err = capsys.readouterr().err
  assert ("--partners must not repeat --models, got 'ours' and 'ours,normflows'") in err
  assert "--partners must be a comma-separated subset of ours, tfp, normflows" in err
  assert "--rows must be a comma-separated subset of best, identical, noclip, clip1000" in err
  assert "--ema_decay must be in [0, 1) (0: no averaging), got 1.0" in err
  args, config = peer_glow.parse_args(["--smoke", "--torch_python", "/no/such/python"])
  with pytest.raises(SystemExit) as exit_info:
    peer_glow.Run(args, config).prepare([("best", ["ours", "normflows"])])
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error: no PyTorch Python at /no/such/python;") and err.count("\n") == 1


def test_profile_attributes_every_op_by_name_scope():
  """The profiler's attribution on a traced training step of our Glow (no timing involved):
  every op in a bijector's scope goes to that bijector's row, every convolution (and its
  gradients) to a network row, and the step's own scopes to theirs."""
  model = peer_models.build("ours", (8, 8, 1), levels=2, steps_per_level=1, width=8, seed=0)
  trainer = peer_models.Trainer(model, peer_protocol.Recipe(ema_decay=0.9, grad_clip_norm=5.0),
                                steps=10)
  x = tf.random.stateless_uniform((4, 8, 8, 1), seed=(1, 2))
  trainer.start(x)
  graph = trainer.step.get_concrete_function(x).graph
  attribution = profile_step.Attribution(model.bijector)
  labels = {}
  for op in graph.get_operations():
    label, backward = attribution(op.name)
    labels.setdefault(label, set()).add(op.type)
    assert backward == op.name.startswith("gradient_tape/")
    if op.type.startswith("Conv2D"):
      assert "network" in label, (op.name, label)
    if "_conv1x1/apply/MatMul" in op.name:
      assert label.startswith("1x1 conv: applying W"), (op.name, label)
    if "_split_perm" in op.name and "carried_map" not in op.name:
      assert label == "split: channel permutation", (op.name, label)
    if "/level1_step0_actnorm/" in op.name and "carried_map" not in op.name:
      assert label == "ActNorm", (op.name, label)
  assert set(labels) >= {
      "coupling networks (Keras conv3x3-conv1x1-conv3x3, ReLU)",
      "coupling: affine map and log-det (sigmoid scale, slicing)",
      "1x1 conv: applying W (matmul over channels)",
      "1x1 conv: W from its LU factors, log|det W| (LU)", "ActNorm",
      "split: learned prior network (Keras conv)", "split: factor-out, prior log-density",
      "split: channel permutation", "squeeze / unsqueeze", "per-element log-det map bookkeeping",
      "base log-density and loss", "gradient norm and clipping", "optimizer (Adam update)",
      "weight average update"}
  union_length = profile_step.union_length
  assert union_length([]) == 0
  assert union_length([(0, 4), (2, 6), (8, 9), (8, 9)]) == 7


def _fake_result(steps_per_second, bpd):
  """The parts of a peer record's result that the main table reads."""
  turns = [{"losses": [0.0] * 5, "seconds": 99.0}]  # the warm-up turn: not timed
  turns += [{"losses": [0.0] * 10, "seconds": 10.0 / steps_per_second}] * 2
  timing = [{"seconds": [0.5, 0.25, 1.0]}]
  return {"train": turns, "evaluation": {"bpd_all": bpd},
          "timings": {"log_prob": timing, "sample": timing, "sample_and_log_prob": timing},
          "ready": {"parameters": 10}, "peak_rss_mb": 100.0}


def test_peer_table_columns_against_tfp():
  _, config = peer_glow.parse_args(["--smoke"])
  tfp = _fake_result(steps_per_second=2.0, bpd=4.1)
  ours = peer_report.table_row(config, "best", "ours", _fake_result(5.0, 3.95), tfp,
                               {"tfp": 2.5, "ours": None})
  assert ours["training images/s"] == pytest.approx(5.0 * config.batch)
  assert ours["training images/s / TFP's"] == pytest.approx(2.5)
  assert ours["training images/s / ours'"] == ""
  assert ours["test bits/dim - TFP's"] == pytest.approx(-0.15)
  assert ours["log_prob images/s"] == pytest.approx(config.log_prob_batch / 0.5)  # the median
  assert set(ours) == set(peer_report.COLUMNS)
  alone = peer_report.table_row(config, "noclip", "ours", _fake_result(5.0, 3.95))
  assert alone["training images/s / TFP's"] == alone["test bits/dim - TFP's"] == ""


def test_peer_speed_ratios_only_between_models_that_trained_together(tmp_path):
  """From a record's rates_alongside; for older records, from the other model's record of the
  same sitting (its own or a partner's); never across sittings."""
  _, config = peer_glow.parse_args(["--smoke"])
  run = dataclasses.make_dataclass("Run", ["records_dir", "config"])(str(tmp_path), config)

  def record(model, rate, alongside, date="2026-12-01", command="peer_glow.py A", **extra):
    result = dict(_fake_result(rate, 4.0), alongside=list(alongside), **extra)
    return {"config": peer_records.record_key(config, model, "identical"), "command": command,
            "machine": {"date": date}, "result": result}

  new = record("normflows", 3.0, ["ours", "normflows"],
               rates_alongside={"ours": 6.0 * config.batch, "normflows": 3.0 * config.batch})
  assert peer_report.speed_ratio(run, "identical", "normflows", new, "ours") == 0.5
  assert peer_report.speed_ratio(run, "identical", "normflows", new, "tfp") is None
  assert peer_report.speed_ratio(run, "identical", "normflows", new, "normflows") is None
  old = record("normflows", 3.0, ["ours", "normflows"])  # no rates_alongside
  assert peer_report.speed_ratio(run, "identical", "normflows", old, "ours") is None
  # ours' own record is from another sitting (beside TFP): not comparable
  slot = peer_records.record_path(run.records_dir, "ours", "identical")
  lf_write_json(slot, record("ours", 5.0, ["ours", "tfp"], date="2026-11-30"))
  assert peer_report.speed_ratio(run, "identical", "normflows", old, "ours") is None
  # ours as the partner of the same sitting, under partners/
  partner = peer_records.record_path(run.records_dir, "ours", "identical", ["ours", "normflows"])
  assert partner.endswith(os.path.join("partners", "identical_ours_with_normflows.json"))
  lf_write_json(partner, record("ours", 6.0, ["ours", "normflows"], command="other"))
  assert peer_report.speed_ratio(run, "identical", "normflows", old, "ours") is None
  lf_write_json(partner, record("ours", 6.0, ["ours", "normflows"]))
  assert peer_report.speed_ratio(run, "identical", "normflows", old, "ours") == 0.5
  # the other model's own record of the same sitting pairs too (how the 2026-11-30 rows pair)
  os.remove(partner)
  lf_write_json(slot, record("ours", 4.0, ["ours", "normflows"]))
  assert peer_report.speed_ratio(run, "identical", "normflows", old, "ours") == 0.75


def lf_write_json(path, value):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump(value, f)


def test_peer_targets_line_when_tfp_diverged(tmp_path):
  """A row whose TFP run diverged gets no bits/dim verdict, but says why; a finite row does."""
  refs = tmp_path / "refs.json"
  refs.write_text(json.dumps({"targets": {"bpd_below_tfp": 0.1, "train_speedup_vs_tfp": 1.8}}))
  ours = dict(_fake_result(5.0, 3.8), train=[{"losses": [1.0] * 10, "grad_norms": [1.0] * 10,
                                              "seconds": 2.0}] * 3)
  tfp = dict(_fake_result(2.0, float("nan")),
             train=[{"losses": [1.0] * 10, "grad_norms": [2.0] * 10, "seconds": 5.0},
                    {"losses": [1.0, float("nan")] + [float("nan")] * 8,
                     "grad_norms": [3e7] + [float("nan")] * 9, "seconds": 5.0},
                    {"losses": [float("nan")] * 10, "grad_norms": [float("nan")] * 10,
                     "seconds": 5.0}])
  speeds = {("best", "ours", "tfp"): 2.5}
  (line,) = peer_report.references([("best", "ours", {"result": ours}),
                                    ("best", "tfp", {"result": tfp})], path=str(refs),
                                   speeds=speeds)
  assert line.startswith("best: no bits/dim comparison (not finite: TFP nan, ours 3.8000; first "
                         "non-finite loss at step 12, largest gradient norm 3e+07 at step 11 "
                         "in TFP's training), training 2.50x")
  tfp["evaluation"] = {"bpd_all": 4.0}
  (line,) = peer_report.references([("best", "ours", {"result": ours}),
                                    ("best", "tfp", {"result": tfp})], path=str(refs))
  assert line == ("best: ours 0.200 bits/dim below TFP (target >= 0.1 below: met), no "
                  "training-speed comparison (the records did not train together)")
  tfp["evaluation"] = {"bpd_all": 3.7}
  (line,) = peer_report.references([("best", "ours", {"result": ours}),
                                    ("best", "tfp", {"result": tfp})], path=str(refs))
  assert line.startswith("best: ours 0.100 bits/dim above TFP (target >= 0.1 below: missed)")


def _peer_record(seed, bpd, jit=None, outside=None):
  worker = {"seed": seed} if jit is None else {"seed": seed, "jit": jit}
  recon = {"samples_nonfinite": 2, "n_samples": 16}
  if outside is not None:
    recon["samples_outside_share"] = outside
  return {"config": {"worker": worker},
          "result": {"evaluation": {"bpd_all": bpd}, "reconstruction": recon}}


def test_peer_seeds_pairs_records_by_seed(tmp_path):
  """Known answer from hand-made records; unusable runs are usage errors, no traceback."""
  runs = tmp_path / "peer_runs"
  for name, seed, ours, theirs in (("a", 0, 3.83, 3.80), ("b", 1, 3.82, 3.84),
                                   ("c", 2, 3.81, 3.80)):
    (runs / name).mkdir(parents=True)
    for model, bpd in (("ours", ours), ("normflows", theirs)):
      record = _peer_record(seed, bpd, jit=True if model == "ours" else None,
                            outside=0.25 if name == "c" else None)
      (runs / name / f"identical_{model}.json").write_text(json.dumps(record))
  run_main(peer_seeds, tmp_path, "--names", "a,b,c")
  record = load(tmp_path, "peer_seeds")
  diffs = [0.03, -0.02, 0.01]
  assert [r["ours - normflows"] for r in record["rows"][:3]] == pytest.approx(diffs)
  paired = record["details"]["paired"]
  assert paired["n"] == 3 and paired["lower"] == 1 and paired["mean"] == pytest.approx(
      np.mean(diffs))
  half = 4.303 * np.std(diffs, ddof=1) / math.sqrt(3)
  assert (paired["low"], paired["high"]) == pytest.approx((np.mean(diffs) - half,
                                                           np.mean(diffs) + half), abs=1e-3)
  assert record["rows"][2]["ours pixels outside [-1, 2]"] == "25%"
  assert record["rows"][0]["ours pixels outside [-1, 2]"] == "not recorded"
  err = io.StringIO()
  for names, message in (("a,missing", "run 'missing' has no record"),
                         ("a,a", "each run must have its own seed, got seeds [0, 0]")):
    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(err):
      run_main(peer_seeds, tmp_path, "--names", names)
    assert exit_info.value.code == 2 and message in err.getvalue()


def test_round_trip_summary_counts_images_over_the_tolerance():
  test = np.array([1e-6, 2e-3, np.nan, 1e-3], np.float32)
  drawn = np.zeros((3, 2, 2, 1), np.float32)
  drawn[1, 0, 0, 0] = np.inf
  drawn[2, 0, 0, 0] = 2.5  # outside [-1, 2]: 1 of the 8 pixels of the finite samples
  drawn[2, 0, 1, 0] = -1.0  # on the edge: inside
  summary = peer_protocol.round_trip_summary(test, drawn, lambda x: np.array([0.5, 1e-4]))
  assert summary["test_over_tolerance"] == 1 and summary["test_nonfinite"] == 1
  assert summary["test_max"] == pytest.approx(2e-3)
  assert summary["samples_over_tolerance"] == 1 and summary["samples_nonfinite"] == 1
  assert summary["samples_outside_share"] == pytest.approx(1 / 8)
  found = [("best", "ours", {"result": {"reconstruction": summary}})]
  assert "| best | ours | 0.002 | 1 | 1 of 4 | 0.5 | 1 | 1 of 3 | 12.5% |" in (
      peer_report.reconstruction_table(found))
  del summary["test_over_tolerance"]  # a record written before the counts existed
  del summary["samples_outside_share"]
  table = peer_report.reconstruction_table(found)
  assert "| 0.002 | n/a (not recorded) |" in table and table.endswith("| n/a (not recorded) |")


def test_log_det_cost_counts_network_runs():
  """The benchmark's count of network runs per call, on a tiny flow of this checkout: the
  library's paths run every network once, TFP's composite paths (no tensor cache) three times."""
  flow = lf_flows.build_flow((8, 8, 1), architecture="glow", levels=2, steps_per_level=1,
                             hidden_channels=8, seed=0)
  x = tf.random.stateless_uniform((4, 8, 8, 1), seed=(1, 2))
  flow.initialize(x)
  compiled = log_det_cost.paths(flow, x, 3)
  assert set(compiled) == set(log_det_cost.PATHS)
  runs = log_det_cost.network_runs(flow, compiled)
  assert runs == {"flow_log_prob": 1.0, "flow_sample": 1.0, "flow_sample_and_log_prob": 1.0,
                  "tfp_log_prob": 3.0, "tfp_sample_and_log_prob": 3.0}
  np.testing.assert_allclose(compiled["flow_log_prob"]().numpy(),
                             compiled["tfp_log_prob"]().numpy(), rtol=1e-5, atol=1e-3)


@pytest.mark.slow
def test_initial_gap_smoke(tmp_path):
  """The step-0 losses of ours and normflows' Glow on one batch, paired by seed."""
  python, why_not = torch_python()
  if python is None:
    pytest.skip(why_not)
  run_smoke("peers/initial_gap.py", tmp_path, "--smoke", "--torch_python", python)
  record = load(tmp_path, "initial_gap_smoke")
  seeds = [r for r in record["rows"] if isinstance(r["seed"], int)]
  assert [r["seed"] for r in seeds] == [0, 1]
  for r in seeds:
    assert 0 < r["ours"] < 20 and 0 < r["normflows"] < 20
    assert r["ours - normflows"] == pytest.approx(r["ours"] - r["normflows"])
  assert record["details"]["paired"]["n"] == 2


@pytest.mark.slow
def test_peer_glow_smoke_rows_records_and_resume(tmp_path):
  """The three peers (normflows only with its venv) through the identical row, then a rerun
  that reuses those records and trains the best row: records, tables, grids, profile."""
  python, why_not = torch_python()
  models = "ours,tfp,normflows" if python else "ours,tfp"
  common = ("--smoke", "--classifier_dir", str(tmp_path / "classifier"), "--classifier_steps",
            "40") + (("--torch_python", python) if python else ())
  # peer_glow's mains run in this process (`run_main`); each model trains in its worker process
  run_main(peer_glow, tmp_path, *common, "--rows", "identical", "--models", models)
  records = tmp_path / "peer_runs" / "peer_glow_smoke"
  first = {m: json.loads((records / f"identical_{m}.json").read_text())
           for m in models.split(",")}
  without_tfp = ",".join(m for m in models.split(",") if m != "tfp")
  out = run_main(peer_glow, tmp_path, *common, "--rows", "identical,best", "--models",
                 without_tfp, "--partners", "tfp")
  assert "[identical] reusing the records of ours" in out
  assert "[best/ours] recorded" in out and "[identical/ours] recorded" not in out
  # TFP trained beside the best row only as its throughput reference: a partner record
  assert "[best/tfp] recorded (partner)" in out and "[identical/tfp] recorded" not in out
  assert not (records / "best_tfp.json").exists()
  partner = json.loads((records / "partners" / f"best_tfp_with_{without_tfp.replace(',', '+')}"
                        ".json").read_text())
  assert partner["result"]["sample_quality"] is None
  assert sorted(partner["result"]["rates_alongside"]) == sorted(models.split(","))
  again = json.loads((records / "identical_ours.json").read_text())
  assert again == first["ours"]  # untouched

  record = load(tmp_path, "peer_glow_smoke")
  rows = {(r["row"], r["model"]): r for r in record["rows"]}
  expected = {("identical", peer_report.LABELS[m]) for m in models.split(",")}
  expected |= {("best", peer_report.LABELS[m]) for m in models.split(",") if m != "tfp"}
  assert set(rows) == expected
  for row in rows.values():
    for column in ("training images/s", "log_prob images/s", "sampling images/s",
                   "sampling with log-prob images/s", "peak RSS MB"):
      assert row[column] > 0 and math.isfinite(row[column]), (row, column)
    assert 0 < row["test bits/dim"] < 40
  ours = rows[("identical", "ours")]
  # the library's default recipe averages the weights: close to the raw ones after 4 steps
  assert ours["test bits/dim, raw weights"] != ours["test bits/dim"]
  assert ours["test bits/dim"] == pytest.approx(ours["test bits/dim, raw weights"], abs=0.1)
  # matched architecture: parameter counts within 10% of ours
  for row in rows.values():
    assert row["parameters"] == pytest.approx(ours["parameters"], rel=0.1)
  # throughput ratios: within a sitting only (both rows' records trained beside TFP)
  for (row_name, label), row in rows.items():
    if label != peer_report.LABELS["tfp"]:
      assert row["training images/s / TFP's"] > 0, (row_name, label)
    if label != peer_report.LABELS["ours"]:
      assert row["training images/s / ours'"] > 0, (row_name, label)

  library = schedules.WarmupDecay(1e-3, 200, "cosine", 4, 0.01)
  for name in (f.name for f in records.iterdir() if f.is_file()):
    result = json.loads((records / name).read_text())["result"]
    assert result["same_data"], name
    assert result["evaluation"]["n_all"] == 297 and result["evaluation"]["finite"] == 1.0
    rates = [r for t in result["train"] for r in t["learning_rates"]]
    if name.startswith("identical") or name == "best_ours.json":  # the library's recipe
      assert rates == pytest.approx([float(library(s)) for s in range(4)], rel=1e-6), name
    else:  # normflows' example: Adamax at a constant 1e-3 from the first step
      assert rates == [1e-3] * 4, name
    recon = result["reconstruction"]
    assert recon["test_max"] < 1e-3 and recon["test_nonfinite"] == 0, name
    assert recon["samples_nonfinite"] + recon["samples_roundtrip_nonfinite"] == 0, name
    quality = result["sample_quality"]
    assert set(quality["temperatures"]) == {"0.5", "0.7", "0.85", "1"}
    for t, r in quality["temperatures"].items():
      assert r["num_used"] == 32 and r["frechet_distance"] > 0, (name, t)
      assert (tmp_path / quality["grids"][t]).is_file()
  assert "](figures/peer_glow_smoke/identical_ours_t0.70.png)" in (
      tmp_path / "peer_glow_smoke.md").read_text()

  profile = load(tmp_path, "profile_train_step_smoke")
  parts = [r for r in profile["rows"] if not r["part"].startswith(("=", "wall", "no op",
                                                                   "reading"))]
  assert sum(r["% of op time"] for r in parts) == pytest.approx(100.0, abs=1e-6)
  for r in parts:
    assert r["total ms/step"] == pytest.approx(r["forward ms/step"] + r["backward ms/step"])
  assert any(r["part"].startswith("coupling networks") for r in parts)


def test_training_trace_variants_and_spikes():
  assert training_trace.parse_variants("a:;b:grad_clip_norm=1e9,lr_schedule=constant") == {
      "a": {}, "b": {"grad_clip_norm": 1e9, "lr_schedule": "constant"}}
  for bad in ("", "a:x", "a:;a:", ":x=1"):
    with pytest.raises(ValueError):
      training_trace.parse_variants(bad)
  flat = [5.0] * 60
  assert training_trace.spikes(flat) == []
  assert training_trace.spikes(flat[:55] + [5.6] + flat[:4]) == [56]


@pytest.mark.slow
def test_training_trace_smoke(tmp_path):
  small = "steps_per_level=1,hidden_channels=8"
  # in this process (`run_main`): the script trains its variants in its main, so here
  run_main(training_trace, tmp_path, "--dataset", "digits", "--steps", "4",
            "--eval_every", "4", "--eval_images", "20", "--ema_decays", "0.9",
            "--variants", f"base:{small};noclip:{small},grad_clip_norm=1e9,ema_decay=0")
  record = load(tmp_path, "training_trace")
  rows = {r["variant"]: r for r in record["rows"]}
  assert set(rows) == {"base", "noclip"} and rows["noclip"]["clipped steps"] == 0
  assert "held-out bpd @4 (ema 0.999)" in rows["base"]  # the run's own averages
  assert "held-out bpd @4 (ema 0.999)" not in rows["noclip"]
  for row in rows.values():
    assert row["steps"] == 4 and 0 < row["held-out bpd @4 (raw)"] < 40
    assert "held-out bpd @4 (ema 0.9)" in row
  details = record["details"]["noclip"]
  assert len(details["bits_per_dim"]) == len(details["grad_norms"]) == 4


def test_noise_floor_budget_recipes_keep_their_size_but_not_under_smoke():
  cfg = noise_floor.recipe_config("steps_6000", "fashion_mnist", 0, False)
  assert (cfg["train_steps"], cfg["checkpoint_every"], cfg["log_every"]) == (6000, 6000, 1500)
  assert noise_floor.recipe_config("warmup_1000", "fashion_mnist", 0, False)["warmup_steps"] == 1000
  smoke = noise_floor.recipe_config("steps_6000", "digits", 0, False, smoke=True)
  assert smoke["train_steps"] == ablation.SMOKE["train_steps"]
  assert intervals.std_interval([1.0]) == ""
  low, high = map(float, intervals.std_interval([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]).split(" - "))
  assert low < np.std([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], ddof=1) < high
  assert (round(low, 3), round(high, 3)) == (0.117, 0.459)  # s = 0.187, 5 degrees of freedom
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


def png_size(path):
  """(width, height) in pixels of the PNG file at `path`; fails unless it is a PNG."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
  return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("module, args, figure", [
    (split_study, (), "split_study_forest.png"),
    (peer_glow, (), "peers.png"),
    (training_trace, ("--name", "training_trace_peer_noclip"), "training_curves.png")])
def test_figures_are_drawn_from_the_committed_records(tmp_path, module, args, figure):
  """Each script's `--figures` draws its figure of docs/figures/ from the committed records in
  docs/results/ (read only), training nothing: a PNG of the committed figure's size."""
  results_dir = os.path.join(ROOT, "docs", "results")
  before = sorted(os.listdir(results_dir))
  out = run_main(module, results_dir, "--figures", *args, "--figures_dir", tmp_path)
  path = tmp_path / figure
  assert out.strip() == f"wrote {path}" and os.listdir(tmp_path) == [figure]
  assert sorted(os.listdir(results_dir)) == before
  width, height = png_size(path)
  assert width == 1000 and 400 <= height <= 700  # 10 inches at 100 dpi
  assert 20_000 < os.path.getsize(path) < 200_000
  assert png_size(os.path.join(ROOT, "docs", "figures", figure)) == (width, height)


def test_split_study_forest_shows_the_tables_intervals():
  """The forest plot's intervals, paired from the committed run lists, are those of the
  committed split-study tables, row by row."""
  results_dir = os.path.join(ROOT, "docs", "results")
  found = split_study.paired_by_setting(results_dir)
  assert [(s, a) for s, a, _, _ in found] == [
      ("fashion_l2", "glow"), ("fashion32_l3", "glow"), ("digits_l3", "glow"),
      ("digits_l3", "realnvp")]
  for setting, arch, rows, date in found:
    with open(os.path.join(results_dir, f"split_study_{setting}.json")) as f:
      table = json.load(f)
    assert date == table["machine"]["date"]
    expected = {r["row"]: r for r in table["rows"] if r["architecture"] == arch}
    assert [r["row"] for r in rows] == [r for r in split_study.ROWS if r != "static"]
    for row in rows:
      for key in ("paired", "paired_control"):
        assert (key in row) == (key in expected[row["row"]]), (setting, arch, row["row"], key)
        if key in row:
          assert row[key] == pytest.approx(expected[row["row"]][key], rel=1e-9)


def test_training_curve_reads_the_log_and_evaluates_every_kept_checkpoint(digits, tmp_path,
                                                                          monkeypatch):
  """training_curve.py on a 4-step digits run in two sittings; a step that a later event file
  logs again (a resumed run's repeat) takes the later value."""
  model_dir = str(tmp_path / "run")
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=4,
      warmup_steps=2, log_every=1, checkpoint_every=2, images_every=100, split="static")
  training.Trainer(config, model_dir, dataset=digits).train(until_step=3)
  training.Trainer(config, model_dir, dataset=digits).train()
  assert sorted(training_curve.logged_train_curve(model_dir)) == [1, 2, 3, 4]
  time.sleep(0.1)  # the repeat is written later
  with tf.summary.create_file_writer(os.path.join(model_dir, "train")).as_default():
    tf.summary.scalar(training_curve.TAG, 99.0, step=4)
  out = run_main(training_curve, tmp_path, model_dir, "--test_images", "30", "--name", "tc",
                 "--figures_dir", tmp_path / "figures")
  rows = load(tmp_path, "tc")["rows"]
  assert [r["step"] for r in rows] == [2, 3, 4]
  assert rows[2]["train bits/dim (last logged)"] == 99.0
  assert all(np.isfinite(r["test bits/dim (ema)"]) and np.isfinite(r["test bits/dim (raw)"])
             for r in rows)
  assert os.path.isfile(tmp_path / "figures" / "tc.png") and "tc.png" in out
  # Again: the record's checkpoints are not evaluated again.
  def not_again(*args, **kwargs):
    raise AssertionError(f"evaluated again: {args}")
  monkeypatch.setattr(training_curve.evaluation, "load_run", not_again)
  run_main(training_curve, tmp_path, model_dir, "--test_images", "30", "--name", "tc",
           "--figures_dir", tmp_path / "figures")
  assert load(tmp_path, "tc")["rows"] == rows
  with pytest.raises(SystemExit):
    run_main(training_curve, tmp_path, str(tmp_path / "nothing"))


def test_converged_ranking_reads_a_trained_model_and_the_pilots_of_its_lc_run(digits, tmp_path):
  """A 6-step static digits run against the 2-step nosplit pilot of an lc run like it; the
  pilot is trained once and reused."""
  model_dir = str(tmp_path / "run")
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=6,
      warmup_steps=2, log_every=3, checkpoint_every=3, images_every=100, split="static")
  training.Trainer(config, model_dir, dataset=digits).train()
  args = ("--model_dir", model_dir, "--pilot_steps", "2", "--workdir", tmp_path / "work",
          "--max_images", "40", "--name", "cr")
  run_main(converged_ranking, tmp_path, *args)
  rows = load(tmp_path, "cr")["rows"]
  assert [(r["rule"], r["source"], r["junction"]) for r in rows] == [
      ("static", "model", 1), ("lc@nosplit", "pilot 0", 1)]
  for row in rows:
    assert row["lc keeps on held-out"].startswith("keeps [")
    assert 0 <= row["logdet keeps as static"] <= 1
  pilot = tmp_path / "work" / "pilots" / "pilot_0" / "ckpt-2.index"
  before = pilot.stat().st_mtime_ns
  run_main(converged_ranking, tmp_path, *args)
  assert pilot.stat().st_mtime_ns == before and load(tmp_path, "cr")["rows"] == rows
  with pytest.raises(SystemExit):
    run_main(converged_ranking, tmp_path, "--pretrained", "mnist")
