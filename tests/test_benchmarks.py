"""The benchmark scripts run end to end (`--smoke`) and their results hold together."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import peer_normflows
from benchmarks import peer_protocol
from benchmarks import peer_tfp_glow
from benchmarks import procs
from benchmarks import scaling
from lcflow_tf import data as lf_data
from lcflow_tf import flows as lf_flows
from lcflow_tf import schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def torch_python():
  """(Python of the PyTorch peer venv, None) or (None, why it is not usable)."""
  python = os.environ.get(peer_normflows.TORCH_PYTHON_ENV) or peer_normflows.DEFAULT_TORCH_PYTHON
  if not os.path.isfile(python):
    return None, (f"no PyTorch peer venv at {python} (install it as docs/benchmarks.md says, "
                  f"or set ${peer_normflows.TORCH_PYTHON_ENV})")
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


def load(results_dir, name):
  with open(os.path.join(results_dir, name + ".json")) as f:
    record = json.load(f)
  assert os.path.isfile(os.path.join(results_dir, name + ".md"))
  return record


@pytest.mark.slow
def test_peer_tfp_glow_smoke(tmp_path):
  run_smoke("peer_tfp_glow.py", tmp_path)
  record = load(tmp_path, "peer_tfp_glow_smoke")
  rows = {r["metric"].split(" (")[0].split(",")[0]: r for r in record["rows"]}
  for row in record["rows"]:
    if isinstance(row["ratio ours/TFP"], float):
      assert row["ours"] > 0 and row["TFP"] > 0 and math.isfinite(row["ours"]), row
      assert row["ratio ours/TFP"] == pytest.approx(row["ours"] / row["TFP"], rel=1e-9)
  assert record["details"]["same_data"]
  # Matched architecture: parameter counts within 10% of each other.
  assert rows["trainable parameters"]["ratio ours/TFP"] == pytest.approx(1.0, abs=0.1)
  for model in ("ours", "TFP"):
    assert 0 < rows["test bits/dim"][model] < 40
    assert rows["peak RSS of the process"][model] >= rows["RSS after imports"][model]
  details = record["details"]["evaluation"]
  assert details["ours"]["n_all"] == details["tfp"]["n_all"] == 297  # all digits test images
  assert details["ours"]["finite"] == details["tfp"]["finite"] == 1.0

  # encode/decode round trips of both trained models: test images and temperature-1 samples
  recon = load(tmp_path, "reconstruction_smoke")
  assert [(r["model"], r["images"].split()[0]) for r in recon["rows"]] == [
      ("ours", "all"), ("ours", "256"), ("tfp", "all"), ("tfp", "256")]
  for r in recon["rows"]:
    assert 0 <= r["max abs error"] < 1e-3 and r["non-finite"] == 0, r
  assert recon["details"]["ours"]["n_test"] == 297

  profile = load(tmp_path, "profile_train_step_smoke")
  parts = [r for r in profile["rows"] if not r["part"].startswith(("=", "wall", "no op",
                                                                   "waiting", "data"))]
  assert sum(r["% of op time"] for r in parts) == pytest.approx(100.0, abs=1e-6)
  for r in parts:
    assert r["total ms/step"] == pytest.approx(r["forward ms/step"] + r["backward ms/step"])
  names = {r["part"] for r in parts}
  assert any(n.startswith("coupling networks") for n in names), names
  assert any(n.startswith("1x1 conv") for n in names), names
  families = profile["details"]["families"]
  assert sum(f["% of op time"] for f in families) == pytest.approx(100.0, abs=1e-6)


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
  run_smoke("scaling.py", tmp_path)
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
  args = ("--architectures", "glow", "--splits", "static,lc", "--seeds", "0", "--train_steps",
          "4", "--workdir", str(tmp_path / "runs"))
  run_smoke("ablation.py", tmp_path, *args)
  record = load(tmp_path, "ablation_digits_glow")  # a subset: named after it
  assert record["command"] == ("python benchmarks/ablation.py --architectures glow --splits "
                               f"static,lc --seeds 0 --train_steps 4 --workdir {tmp_path}/runs")
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
  with open(tmp_path / "ablation_digits_glow_runs.json") as f:
    assert len(json.load(f)) == 3
  assert os.listdir(tmp_path / "figures")  # LC heatmaps of the seed-0 lc run

  # lc_anatomy on two of those runs (static pilot: one `model` row per run and junction)
  runs = tmp_path / "runs" / "ablation_digits"
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "lc_anatomy.py"),
       str(runs / "glow_static_seed0"), str(runs / "glow_lc_seed0"), "--max_images", "40",
       "--results_dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
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
  run_smoke("heldout_spread.py", tmp_path, str(runs / "glow_static_seed0"),
            str(runs / "glow_lc_seed0"))
  spread = load(tmp_path, "heldout_spread")["rows"]
  assert [r["run"] for r in spread] == ["glow_static_seed0", "glow_lc_seed0"]
  for row, split in zip(spread, ("static", "lc")):
    assert row["mean"] == pytest.approx(rows[split]["test bpd mean"], rel=1e-4)
    assert row["images"] == 297 and row["median"] <= row["worst image"]
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "heldout_spread.py"),
                         str(tmp_path / "no_such_run")], env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2 and "no_such_run has no config.json" in proc.stderr
  assert "Traceback" not in proc.stderr

  # Every run left a record of its configuration and result. Another configuration is
  # retrained from scratch (its stale run folder removed); a rerun without run folders (a
  # fresh clone) reuses the records and trains nothing.
  records = tmp_path / "ablation_runs" / "ablation_digits"
  assert sorted(os.listdir(records)) == ["glow_lc_reinit_seed0.json", "glow_lc_seed0.json",
                                         "glow_static_seed0.json"]
  with open(records / "glow_lc_reinit_seed0.json") as f:
    config = json.load(f)["config"]
  assert (config["split"], config["lc_reinit"], config["train_steps"]) == ("lc", True, 4)
  out = run_smoke("ablation.py", tmp_path, *args[:2], "--splits", "static", *args[4:7], "5",
                  *args[8:])
  assert "[glow_static_seed0] training 5 steps" in out
  with open(records / "glow_static_seed0.json") as f:
    assert json.load(f)["config"]["train_steps"] == 5
  assert not [p for p in os.listdir(runs / "glow_static_seed0") if p.startswith("ckpt-4")]
  shutil.rmtree(runs)
  assert "training" not in run_smoke("ablation.py", tmp_path, *args[:2], "--splits", "lc",
                                     *args[4:])
  def results_of(rows):
    return [(r["split"], r["per seed"], r["kept as static"]) for r in rows]
  assert results_of(load(tmp_path, "ablation_digits_glow")["rows"]) == results_of(
      r for r in record["rows"] if r["split"] != "static")


@pytest.mark.slow
def test_split_study_tiny_and_its_anatomy(tmp_path):
  """The study's machinery end to end on digits (Glow L=3: two nosplit pilots), then
  lc_anatomy on its nosplit run: a row per pilot, whose kept order is the model's."""
  args = ("--quick", "--rows", "static,logdet@nosplit", "--train_steps", "8", "--workdir",
          str(tmp_path / "runs"))
  run_smoke("split_study.py", tmp_path, *args)
  record = load(tmp_path, "split_study_digits_l3_quick")
  rows = {r["row"]: r for r in record["rows"]}
  assert set(rows) == {"static", "logdet@nosplit"}
  assert rows["static"]["kept as static"] == "1.00, 1.00"  # two junctions
  diff = rows["logdet@nosplit"]["test bpd mean"] - rows["static"]["test bpd mean"]
  paired = rows["logdet@nosplit"]["paired"]
  assert paired["n"] == 1 and paired["low"] is None and paired["lower"] == int(diff < 0)
  assert paired["mean"] == pytest.approx(diff)
  records = tmp_path / "split_study_runs" / "split_study_digits_l3_quick"
  with open(records / "glow_logdet_at_nosplit_seed0.json") as f:
    config = json.load(f)["config"]
  assert (config["split"], config["lc_pilot"], config["lc_pilot_steps"], config["levels"]) == (
      "logdet", "nosplit", 2, 3)
  run = tmp_path / "runs" / "split_study_digits_l3_quick" / "glow_logdet_at_nosplit_seed0"
  assert {"pilot_0", "pilot_1"} <= set(os.listdir(run))
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "lc_anatomy.py"), str(run),
       "--max_images", "40", "--results_dir", str(tmp_path)], env=env, capture_output=True,
      text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  anatomy = load(tmp_path, "lc_anatomy")["rows"]
  assert [(r["source"], r["junction"]) for r in anatomy] == [
      ("model", 1), ("model", 2), ("pilot 0", 1), ("pilot 1", 2)]
  assert [len(json.loads(r["mean A per channel"])) for r in anatomy] == [4, 8, 4, 8]
  assert anatomy[2]["trained split"] == anatomy[0]["trained split"]
  assert "kept by rule on held-out" in anatomy[2]


def test_split_study_paired_summary():
  from benchmarks import split_study  # pylint: disable=g-import-not-at-top
  summary = split_study.paired_summary([1.0, 2.0, 3.5], [1.5, 2.0, 3.0])
  # diffs -0.5, 0, 0.5: mean 0, sd 0.5, t(0.975, 2) = 4.302653
  assert summary["n"] == 3 and summary["lower"] == 1 and summary["mean"] == 0.0
  assert summary["high"] == pytest.approx(4.302653 * 0.5 / 3 ** 0.5, rel=1e-6)
  assert summary["low"] == pytest.approx(-summary["high"])
  assert split_study.format_paired(summary) == "+0.0000 [-1.2421, +1.2421] (lower on 1/3)"


def test_split_study_cropped_sampler():
  from benchmarks import split_study  # pylint: disable=g-import-not-at-top
  from lcflow_tf import sample_quality  # pylint: disable=g-import-not-at-top
  flow = lf_flows.build_flow((12, 12, 1), levels=2, steps_per_level=1, hidden_channels=4)
  full = sample_quality.flow_sampler(flow)(3, 0.7, 5)
  cropped = split_study.cropped_sampler(flow, (8, 8))(3, 0.7, 5)
  assert cropped.shape == (3, 8, 8, 1)
  np.testing.assert_array_equal(cropped, full[:, 2:10, 2:10])


@pytest.mark.slow
@pytest.mark.parametrize("script", ["lc_overhead.py", "export_latency.py"])
def test_quick_benchmarks_write_results(tmp_path, script):
  run_smoke(script, tmp_path, "--quick")
  record = load(tmp_path, script.replace(".py", "_quick"))
  assert record["command"] == f"python benchmarks/{script} --quick"
  assert record["machine"]["cores"] >= 1 and record["rows"]


def test_analytic_conv_flops_by_hand():
  # 8x8x3, L=2, K=1, width 8, batch 2. Level 0: 4x4 maps, c=12: coupling 6->8 (3x3),
  # 8->8 (1x1), 8->12 (3x3); prior 6->12 (3x3). Level 1: 2x2 maps, c=24: 12->8, 8->8, 8->24.
  level0 = (9 * 6 * 8 + 8 * 8 + 9 * 8 * 12 + 9 * 6 * 12) * 16
  level1 = (9 * 12 * 8 + 8 * 8 + 9 * 8 * 24) * 4
  assert scaling.analytic_conv_flops(8, 3, 2, 1, 8, 2) == 2 * 2 * (level0 + level1)


def test_union_length_of_overlapping_intervals():
  union_length = peer_tfp_glow._union_length  # pylint: disable=protected-access
  assert union_length([]) == 0
  assert union_length([(0, 4), (2, 6), (8, 9), (8, 9)]) == 7


def test_peer_arguments_are_checked():
  _, config = peer_tfp_glow.parse_args(["--quick"])
  assert (config.steps, config.levels, config.steps_per_level, config.width, config.batch) == (
      200, 2, 8, 128, 64)
  with pytest.raises(SystemExit):
    peer_tfp_glow.parse_args(["--steps", "10", "--warmup_steps", "10"])
  with pytest.raises(SystemExit):
    scaling.parse_args(["--sizes", "12", "--levels", "3"])


@pytest.mark.slow
def test_peer_normflows_smoke(tmp_path):
  python, why_not = torch_python()
  if python is None:
    pytest.skip(why_not)
  env_args = ("--torch_python", python)
  run_smoke("peer_normflows.py", tmp_path, "--smoke", *env_args)
  record = load(tmp_path, "peer_normflows_smoke")
  details = record["details"]
  assert details["same_data"] == {"ours": True, "normflows": True}
  rows = {r["metric"].split(" (")[0].split(",")[0]: r for r in record["rows"]}
  for row in record["rows"]:
    assert row["ours"] > 0 and row["normflows"] > 0, row
    assert row["ratio ours/normflows"] == pytest.approx(row["ours"] / row["normflows"], rel=1e-9)
  # Matched architecture: within 10% in parameters; normflows keeps unused LU triangles.
  assert rows["trainable parameters"]["ratio ours/normflows"] == pytest.approx(1.0, abs=0.1)
  used = rows["trainable parameters the model uses"]
  assert used["ours"] == rows["trainable parameters"]["ours"]
  assert used["normflows"] < rows["trainable parameters"]["normflows"]
  for model in ("ours", "normflows"):
    evaluation = details["evaluation"][model]
    assert evaluation["n_all"] == 297 and evaluation["finite"] == 1.0  # all digits test images
    assert 0 < rows["test bits/dim"][model] < 40
    # 4 steps at a tiny learning rate: test bits/dim close to the training loss's
    assert rows["test bits/dim"][model] == pytest.approx(
        rows["final train loss as bits/dim"][model], abs=0.5)
    assert rows["peak RSS of the process"][model] >= rows["RSS after imports"][model]
  # The identical recipe: our model's warm-up schedule, step by step.
  assert details["normflows_learning_rates"] == pytest.approx(
      [float(schedules.WarmupDecay(1e-3, 200)(s)) for s in range(4)], rel=1e-6)
  assert "raw_weights" not in details["evaluation"]["normflows"]

  # The torch worker alone with the other recipe: cosine to the floor, clipping, averaging.
  _, config = peer_normflows.parse_args(
      ["--smoke", "--lr_schedule", "cosine", "--lr_warmup", "2", "--lr_min_ratio", "0.1",
       "--ema_decay", "0.9", "--grad_clip_norm", "5"])
  stream = tmp_path / "stream"
  stream.mkdir()
  meta = peer_protocol.export_stream(str(stream), "digits", 8, 4, seed=0, eval_seed=1234)
  worker = procs.Worker(peer_normflows.WORKER, [
      "--stream", str(stream), "--config", json.dumps(peer_normflows.normflows_config(config))],
                        "normflows", python=python, env=peer_normflows.torch_env())
  try:
    trained = worker.request("train", n=4)
    evaluation = worker.request("evaluate")
    worker.close()
  finally:
    worker.kill()
  ours = schedules.WarmupDecay(1e-3, 2, "cosine", 4, 0.1)
  assert trained["learning_rates"] == pytest.approx([float(ours(s)) for s in range(4)], rel=1e-6)
  assert trained["checksums"] == [[0, meta["checksums"][0]], [3, meta["checksums"][3]]]
  assert evaluation["averaged"] and evaluation["raw_weights"]["finite"] == 1.0
  # the averaged weights are another model than the last ones, but close after 4 steps
  assert evaluation["bpd_all"] != evaluation["raw_weights"]["bpd_all"]
  assert evaluation["bpd_all"] == pytest.approx(evaluation["raw_weights"]["bpd_all"], abs=0.1)


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
    assert meta["tf_checksums"][i] == float(tf.reduce_sum(tf.cast(expected, tf.float64)))
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


def test_peer_protocol_recipe_formulas():
  warmup = schedules.WarmupDecay(1e-3, 200)
  for step in (0, 99, 199, 200, 1999):
    assert peer_protocol.learning_rate(step, 1e-3, 200) == pytest.approx(float(warmup(step)))
  cosine = [peer_protocol.learning_rate(s, 1e-3, 200, "cosine", 2000, 0.01) for s in range(2001)]
  ours = schedules.WarmupDecay(1e-3, 200, "cosine", 2000, 0.01)  # the library's, step by step
  assert cosine == pytest.approx([float(ours(s)) for s in range(2001)], rel=1e-5)
  assert cosine[1100] == pytest.approx(0.5 * (1e-3 + 1e-5))  # half way after the warm-up
  assert cosine[-1] == pytest.approx(1e-5)  # the floor after the last update
  assert all(a >= b for a, b in zip(cosine[199:], cosine[200:]))
  with pytest.raises(ValueError, match="schedule"):
    peer_protocol.learning_rate(0, 1e-3, 200, "linear")
  with pytest.raises(ValueError, match="total_steps"):
    peer_protocol.learning_rate(300, 1e-3, 200, "cosine", 200)
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


def test_peer_normflows_arguments(capsys):
  _, config = peer_normflows.parse_args(["--grad_clip_norm", "1000"])
  assert (config.steps, config.levels, config.steps_per_level, config.width, config.batch,
          config.chunk_steps, config.warmup_steps) == (2000, 2, 8, 128, 64, 100, 20)
  assert peer_normflows.result_suffix(config) == "_clip1000"
  # our model's worker is peer_tfp_glow.py's, with the same sizes and recipe
  _, ours = peer_tfp_glow.parse_args(peer_normflows.ours_worker_args(config))
  assert (ours.steps, ours.width, ours.chunk_steps, ours.grad_clip_norm, ours.lr_warmup) == (
      2000, 128, 100, 1000.0, 200)
  _, config = peer_normflows.parse_args(["--quick", "--steps", "400", "--lr_schedule", "cosine",
                                         "--ema_decay", "0.999", "--normflows_recipe", "example"])
  assert peer_normflows.result_suffix(config) == "_quick_cosine_ema0.999_nfexample"
  assert "--lr_schedule" in peer_normflows.ours_worker_args(config)
  example = peer_normflows.normflows_config(config)
  assert (example["optimizer"], example["weight_decay"], example["lr_warmup"],
          example["ema_decay"], example["grad_clip_norm"], example["skip_nonfinite"]) == (
              "adamax", 1e-5, 0, 0.0, None, True)
  for bad in (["--ema_decay", "1"], ["--lr_min_ratio", "2"], ["--torch_threads", "-1"],
              ["--grad_clip_norm", "0"], ["--smoke", "--lr_schedule", "cosine"]):
    with pytest.raises(SystemExit):
      peer_normflows.parse_args(bad)
  args, config = peer_normflows.parse_args(["--smoke", "--torch_python", "/no/such/python"])
  capsys.readouterr()  # the usage messages above
  with pytest.raises(SystemExit) as exit_info:
    peer_normflows.compare(args, config)
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith("error: no PyTorch Python at /no/such/python;") and err.count("\n") == 1
