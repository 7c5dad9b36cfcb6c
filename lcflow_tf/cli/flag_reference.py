"""Writes the flag reference of the three programs (docs/reference/flags.md) from their flags.

  python -m lcflow_tf.cli.flag_reference docs/reference/flags.md   # rewrite the page
  python -m lcflow_tf.cli.flag_reference                           # print it

The programs' modules (`train`, `evaluate`, `export` in this package) define absl flags on the
global `absl.flags.FLAGS`, and some names repeat (`--model_dir`), so two of them cannot be
imported side by side. `describe_flags` imports one, records its flags and removes them from
`FLAGS` before the next is imported; `render` writes one Markdown table per program (flag, type,
default, help), in the order the flags are defined. Importing this module imports no program.
"""

import importlib
import os
import sys

from absl import flags

# Console script -> the module that defines its flags, in the order of the reference.
PROGRAMS = {"lcflow-train": "lcflow_tf.cli.train",
            "lcflow-eval": "lcflow_tf.cli.evaluate",
            "lcflow-export": "lcflow_tf.cli.export"}
COMMAND = "python -m lcflow_tf.cli.flag_reference docs/reference/flags.md"
_REQUIRED = "must have a value other than None"  # absl's message of mark_flag_as_required
_ESCAPES = {"\\": "\\\\", "|": "\\|", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]",
            "`": "\\`", "<": "&lt;", ">": "&gt;"}


def _flag_record(flag):
  """A dict of one `absl.flags.Flag`: name, type, default, help, required."""
  kind, text = flag.flag_type(), flag.help
  enum_values = getattr(flag.parser, "enum_values", None)
  if enum_values:
    kind = f"enum: {', '.join(enum_values)}"
    text = text.removeprefix(f"<{'|'.join(enum_values)}>: ")  # absl's prefix, said in `type`
  return {"name": flag.name, "type": kind, "default": flag.default, "help": text,
          "required": any(_REQUIRED in getattr(v, "message", "") for v in flag.validators)}


def describe_flags(module_name):
  """The flags that importing `module_name` defines, as a list of dicts (definition order).

  Imports the module, records its flags, then removes them from `absl.flags.FLAGS`, so that the
  next program module can define its own flags of the same names in this process. Call it in a
  process that uses no program's flags otherwise (as `python -m lcflow_tf.cli.flag_reference`).

  Args:
    module_name: a module of `PROGRAMS`, e.g. "lcflow_tf.cli.train".

  Returns:
    [{"name", "type", "default", "help", "required"}] of the flags defined by that module.
  """
  importlib.import_module(module_name)
  defined = flags.FLAGS.get_flags_for_module(module_name)
  records = [_flag_record(f) for f in defined]
  for flag in defined:
    delattr(flags.FLAGS, flag.name)
  return records


def _cell(text):
  """`text` escaped for a Markdown table cell (GitHub and Python-Markdown alike)."""
  text = " ".join(str(text).split())
  return "".join(_ESCAPES.get(c, c) for c in text)


def _default(value):
  """A flag's default as the command line would spell it, in a code span; "none" for None."""
  if value is None:
    return "none"
  if isinstance(value, bool):
    spelled = str(value).lower()
  elif isinstance(value, (list, tuple)):
    spelled = ",".join(str(v) for v in value)
  else:
    spelled = str(value)
  return f"`{spelled}`" if spelled else "`''`"


def render(described):
  """The Markdown page of `described` ({program: [flag dicts]}, as `describe_flags` returns)."""
  lines = ["# Flag reference", "",
           "Every flag of the three programs, generated from their definitions by",
           f"`{COMMAND}` (do not edit by hand; `tests/test_docs.py` fails when this page and",
           "the flags differ). Each program's `--help` prints its usage and the same flags.",
           "Values are checked where they enter: a bad one ends the program with a one-line",
           "`error: ...` and exit status 1.", ""]
  for program, records in described.items():
    lines += [f"## {program}", "", f"Module `{PROGRAMS[program]}`; {len(records)} flags.", "",
              "| flag | type | default | help |", "|---|---|---|---|"]
    for r in records:
      required = " **Required.**" if r["required"] else ""
      lines.append(f"| `--{r['name']}` | {_cell(r['type'])} | {_default(r['default'])} | "
                   f"{_cell(r['help'])}{required} |")
    lines.append("")
  return "\n".join(lines)


def generate():
  """The flag reference page of `PROGRAMS` (imports each program module in turn)."""
  return render({program: describe_flags(module) for program, module in PROGRAMS.items()})


def main(argv):
  """Writes the page to the path in `argv` (or prints it when `argv` is empty)."""
  if len(argv) > 1 or (argv and argv[0].startswith("-")):
    print(f"usage: {COMMAND.rsplit(' ', 1)[0]} [OUTPUT.md]", file=sys.stderr)
    return 2
  page = generate()
  if not argv:
    print(page, end="")
    return 0
  os.makedirs(os.path.dirname(os.path.abspath(argv[0])), exist_ok=True)
  with open(argv[0], "w", encoding="utf-8") as f:
    f.write(page)
  print(f"wrote {argv[0]}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
