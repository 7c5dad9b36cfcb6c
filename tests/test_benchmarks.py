"""The benchmark scripts run end to end (`--smoke`) and their results hold together."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

from benchmarks import peer_tfp_glow
from benchmarks import scaling

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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

  # lc_anatomy on two of those runs: LC = log N(h) + A per half; lc keeps half the elements
  runs = tmp_path / "runs" / "ablation_digits"
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "benchmarks", "lc_anatomy.py"),
       str(runs / "glow_static_seed0"), str(runs / "glow_lc_seed0"), "--max_images", "40",
       "--results_dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  anatomy = load(tmp_path, "lc_anatomy")["rows"]
  assert len(anatomy) == 4  # 2 runs x 1 split point x 2 halves
  # the static run was trained with the identity order at every location of the 4x4x4 split
  assert anatomy[0]["trained split (most common order)"] == (
      "keeps [0, 1], factors out [2, 3] at 16/16 locations")
  for first, second in (anatomy[:2], anatomy[2:]):
    assert first["lc keeps (fraction)"] + second["lc keeps (fraction)"] == pytest.approx(1.0)
    for row in (first, second):
      assert row["mean LC"] == pytest.approx(row["mean log N(h)"] + row["mean A (log-det)"],
                                             abs=1e-4)

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
