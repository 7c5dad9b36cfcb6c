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
