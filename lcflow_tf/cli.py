"""What the command-line scripts (train.py, eval.py, export.py) share: one-line errors.

A bad flag value, file or directory ends a script with `error: <one line>` on stderr and exit
status 1, never with a traceback.
"""

import sys


def fail(message):
  """Prints `message` as a one-line `error: ...` to stderr and exits with status 1."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(1)


def reject_positional_arguments(argv):
  """Fails when absl left positional arguments in `argv` (every setting is a --flag)."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; all settings are --flags (see --helpshort).")
