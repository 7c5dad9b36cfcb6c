"""What the command-line programs share: one-line errors and the absl entry point.

The programs are the console scripts `lcflow-train`, `lcflow-eval` and `lcflow-export` of the
installed package; in a checkout, `python train.py`, `python eval.py` and `python export.py`
run the same `main`. Each program's flags and `main` live in a module of this package
(`train`, `evaluate`, `export`). Each defines its own absl flags, and some names repeat
(`--model_dir`), so a process imports one of them, never two; this module imports none.

A bad flag value, file or directory ends a program with `error: <one line>` on stderr and exit
status 1, never with a traceback.
"""

import sys

from absl import app
from absl import flags


def fail(message):
  """Prints `message` as a one-line `error: ...` to stderr and exits with status 1."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(1)


def reject_positional_arguments(argv):
  """Fails when absl left positional arguments in `argv` (every setting is a --flag)."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; all settings are --flags (see --helpshort).")


def run(main, usage, module_name):
  """Runs `main` with `absl.app.run` as the program's entry point.

  absl's `--help` prints the docstring of `__main__` and `--helpshort` the flags of the module
  named `sys.argv[0]`. A console script's `__main__` is a stub that pip generates and a
  checkout's `train.py` only imports its flags, so both would show neither usage nor flags.
  This gives `__main__` the docstring `usage` and makes the flags that `module_name` defines
  key flags of `sys.argv[0]`, then calls `app.run(main)`.

  Args:
    main: the program's `main(argv)`.
    usage: what `--help` prints before the flags (the program module's docstring).
    module_name: the name of the module that defines the program's flags.

  Raises:
    SystemExit: always, as `absl.app.run` does (status 0, or 1 after an error or `--help`).
  """
  sys.modules["__main__"].__doc__ = usage
  for flag in flags.FLAGS.get_flags_for_module(module_name):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  app.run(main)
