"""Writing benchmark results: one JSON and one Markdown table per benchmark, in docs/results/."""

import datetime
import os
import platform
import sys

import tensorflow as tf

from lcflow_tf import files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS_DIR = os.path.join(ROOT, "docs", "results")
OUTPUT_FLAGS = ("--results_dir", "--figures_dir")  # where a run writes: not in its command


def machine():
  """Where and when a measurement was taken."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [l.split(":", 1)[1].strip() for l in f if l.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
  return {"date": datetime.date.today().isoformat(), "cpu": cpu, "cores": os.cpu_count(),
          "gpus": gpus, "tensorflow": tf.__version__, "python": platform.python_version()}


def command_line(argv=None):
  """This run's command as `python benchmarks/<package>/<script> ...`, without output folders.

  The script is named by its path from the repository's root, as a reader reruns it from
  there. The results name where they are written, so the output folders (`OUTPUT_FLAGS`) are
  left out of the command.
  """
  argv = sys.argv if argv is None else argv
  kept, skip = [], False
  for a in argv[1:]:
    if skip:
      skip = False
    elif a in OUTPUT_FLAGS:
      skip = True
    elif not a.startswith(tuple(f + "=" for f in OUTPUT_FLAGS)):
      kept.append(a)
  script = os.path.relpath(os.path.abspath(argv[0]), ROOT).replace(os.sep, "/")
  return " ".join(["python", script] + kept)


def write(name, command, rows, columns, notes="", results_dir=None, details=None):
  """Writes <results_dir>/<name>.json and .md; returns the Markdown text.

  `results_dir` defaults to docs/results/ of this repository; `details` (JSON-serialisable)
  goes into the JSON only.
  """
  results_dir = RESULTS_DIR if results_dir is None else results_dir
  os.makedirs(results_dir, exist_ok=True)
  info = machine()
  record = {"command": command, "machine": info, "rows": rows, "notes": notes}
  if details is not None:
    record["details"] = details
  write_json(os.path.join(results_dir, f"{name}.json"), record)
  lines = [f"Command: `{command}`  ",
           f"Machine: {info['cpu']}, {info['cores']} cores, GPUs: {info['gpus'] or 'none'}, "
           f"TensorFlow {info['tensorflow']}; date {info['date']}.", "",
           "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
  if notes:
    lines += ["", notes]
  text = "\n".join(lines) + "\n"
  with open(os.path.join(results_dir, f"{name}.md"), "w") as f:
    f.write(text)
  return text


def write_json(path, value):
  """Writes `value` as JSON to `path` whole or not at all (`lcflow_tf.files`), keys in order."""
  files.write_json_atomic(path, value, sort_keys=False)


def _fmt(v):
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)
