"""The worked examples run and learn: TFP reuse, and training with Keras."""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name, *args):
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), *args],
                        env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


@pytest.mark.slow
def test_tfp_chain_example_learns():
  out = run_example("tfp_chain.py", "--steps", "150")
  start, end = map(float, re.search(r"test bits/dim: ([\d.]+) -> ([\d.]+)", out).groups())
  assert end < start - 0.5, out


@pytest.mark.slow
def test_lc_on_chain_example_fixes_split_from_statistics():
  out = run_example("lc_on_chain.py", "--pilot_steps", "60", "--steps", "60")
  match = re.search(r"statistics over (\d+) images; kept channels at \(0, 0\): \[(\d), (\d)\]; "
                    r"test bits/dim: pilot ([\d.]+), split fixed ([\d.]+), after \d+ more steps "
                    r"([\d.]+)", out)
  assert match, out
  assert int(match.group(1)) == 60 * 64
  assert all(0 < float(v) < 10 for v in match.groups()[3:])


def test_keras_fit_example_trains_saves_reloads_and_exports(tmp_path):
  out = run_example("keras_fit.py", "--steps", "40", "--out_dir", str(tmp_path))
  before = float(re.search(r"before training: ([\d.]+)", out).group(1))
  after = float(re.search(r"after training: ([\d.]+)", out).group(1))
  assert after < before - 0.2, out
  assert "identical log-densities True" in out
  served = float(re.search(r"test images ([\d.]+)", out).group(1))
  assert abs(served - after) < 0.3, out  # bin centres of 64 images vs. dequantised, all 297
  assert {"best.keras", "final.keras", "export", "logs"} <= set(os.listdir(tmp_path))
