"""`lcflow-eval` run from a checkout: `python eval.py [--flags]`, from any directory.

The program (its flags, usage and `main`) is `lcflow_tf.cli.evaluate`; `--helpshort` lists the
flags. Running this file puts the checkout first on `sys.path`, so it runs the checkout's
lcflow_tf even when another copy is installed.
"""

from lcflow_tf.cli.evaluate import main  # pylint: disable=unused-import (tests/cli_runner.py)
from lcflow_tf.cli.evaluate import run

if __name__ == "__main__":
  run()
