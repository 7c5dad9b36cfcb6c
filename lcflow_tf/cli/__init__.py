"""What the command-line programs share: one-line errors and the absl entry point.

The programs are the console scripts `lcflow-train`, `lcflow-eval` and `lcflow-export` of the
installed package; in a checkout, `python train.py`, `python eval.py` and `python export.py`
run the same `main`. Each program's flags and `main` live in a module of this package
(`train`, `evaluate`, `export`). Each defines its own absl flags, and some names repeat
(`--model_dir`), so a process imports one of them, never two; this module imports none.

A bad flag value, file or directory ends a program with `error: <one line>` on stderr and exit
status 1, never with a traceback. The programs start quietly: TensorFlow's own INFO messages
are off (the programs' progress lines stay), and on a machine without an NVIDIA driver the
error-level line of TensorFlow's CUDA probe ("failed call to cuInit"), which is expected there,
is kept off stderr (`quiet_tensorflow`).
"""

import logging
import os
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging as absl_logging

# Present when an NVIDIA driver is loaded; without it a failed CUDA probe is expected.
NVIDIA_DRIVER = "/proc/driver/nvidia/version"
_CUDA_PROBE_FAILURE = "failed call to cuInit"


def fail(message):
  """Prints `message` as a one-line `error: ...` to stderr and exits with status 1."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(1)


def reject_positional_arguments(argv):
  """Fails when absl left positional arguments in `argv` (every setting is a --flag)."""
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}; all settings are --flags (see --helpshort).")


def model_dir_or_pretrained(flag_values):
  """The run directory that `--model_dir` or `--pretrained` names, and the output directory.

  `--pretrained=NAME` stands for the verified directory of a model of `lcflow_tf.pretrained`;
  it excludes a given `--model_dir` and `--checkpoint` (the model has one checkpoint). The
  output directory is `--output_dir` when the program has it and it is given, else None for a
  run (the program's default inside the run) and `pretrained_eval/NAME` for a pretrained model
  (never inside the installed package).

  Args:
    flag_values: the parsed flags (`--model_dir`, `--pretrained`, `--checkpoint`, and
      optionally `--output_dir`); without `--pretrained`, `--model_dir` is set.

  Returns:
    (model_dir, output_dir).

  Raises:
    SystemExit: through `fail` (status 1, one line) for a bad combination or model.
  """
  from lcflow_tf import pretrained  # pylint: disable=g-import-not-at-top
  output_dir = flag_values.output_dir if "output_dir" in flag_values else None
  name = flag_values.pretrained
  if name is None:
    return flag_values.model_dir, output_dir
  if flag_values["model_dir"].present:
    fail("give one of --model_dir (a training run) and --pretrained (a shipped model).")
  if flag_values.checkpoint is not None:
    fail("--checkpoint belongs to --model_dir; a pretrained model has one checkpoint.")
  try:
    model_dir = pretrained.path(name)
  except ValueError as e:
    fail(e)
  return model_dir, output_dir or os.path.join("pretrained_eval", name)


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
  app.run(main, flags_parser=_parse_then_quiet)


def _parse_then_quiet(argv):
  """absl's flag parsing, then `quiet_tensorflow` (not for --help, which exits in parsing)."""
  args = app.parse_flags_with_usage(argv)
  quiet_tensorflow()
  return args


class _NoInfoFrom(logging.Filter):
  """Drops the INFO (and debug) records logged by the modules under `directory`."""

  def __init__(self, directory):
    super().__init__()
    self.directory = os.path.join(os.path.realpath(directory), "")

  def filter(self, record):
    return (record.levelno > logging.INFO
            or not os.path.realpath(record.pathname).startswith(self.directory))


def quiet_tensorflow(driver=NVIDIA_DRIVER):
  """TensorFlow's INFO logs off; its CUDA probe's error line off where no NVIDIA driver is.

  TensorFlow logs through Python's "tensorflow" logger and, in newer modules, through absl's:
  the first gets level WARNING, absl's handler a filter for INFO records from TensorFlow's
  own files (the programs' own INFO lines stay).

  The probe runs when TensorFlow first lists its devices; this lists them once with stderr
  captured (file descriptor 2, where TensorFlow's C++ logs go) and passes on every captured
  line except the probe's "failed call to cuInit" when `driver` does not exist. Listing the
  physical devices does not initialise them, so logical CPU devices and
  `MultiWorkerMirroredStrategy` can still be set up afterwards.

  Args:
    driver: the file whose presence means an NVIDIA driver is loaded.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  logging.getLogger("tensorflow").setLevel(logging.WARNING)
  absl_logging.get_absl_handler().addFilter(_NoInfoFrom(os.path.dirname(tf.__file__)))
  if os.path.exists(driver):
    tf.config.list_physical_devices()
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      tf.config.list_physical_devices()
    finally:
      os.dup2(saved, 2)
      os.close(saved)
    captured.seek(0)
    lines = captured.read().decode(errors="replace").splitlines(keepends=True)
  sys.stderr.write("".join(line for line in lines if _CUDA_PROBE_FAILURE not in line))
  sys.stderr.flush()
