"""README's Python snippets run as written (docs must not rot)."""

import os
import re

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_blocks_run():
  with open(os.path.join(ROOT, "README.md")) as f:
    blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
  assert len(blocks) >= 3
  namespace = {}
  for block in blocks:
    exec(compile(block, "README.md", "exec"), namespace)  # pylint: disable=exec-used
  assert namespace["bpd"].shape == (64,)
  np.testing.assert_allclose(namespace["r"].log_prob, namespace["log_p"], rtol=1e-5)
  assert namespace["dist"].sample(2).shape == (2, 8, 8, 1)
  assert 1.0 < namespace["scores"]["bits_per_dim"] < 4.5  # "Training with Keras": it learned
  assert namespace["log_densities"].shape == (297,)
  assert namespace["images"].shape == (16, 8, 8, 1)
  assert bool(namespace["model"].flow.split_fixed.numpy())  # the nosplit pilots' model


def test_ci_runs_the_readme_test_commands():
  """.ci/run ends with README's test command, exactly, then README's slow tier."""
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    commands = [line for line in f.read().splitlines() if "pytest" in line
                and not line.startswith("#") and "pip install" not in line]
  assert commands == [".venv/bin/python -m pytest -q",
                      ".venv/bin/python -m pytest -q --slow -m slow"]
  quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
  assert "\n" + commands[0] + "\n" in quick_start  # the test command of the two set-up steps
  for command in commands:
    assert command in readme
