"""The code's shape: no function in lcflow_tf/ longer than ~60 lines, no line over 100
characters in the library, the scripts, the benchmarks and the tests; the library carries no
history (dates, issue numbers); its import graph has no cycle and no arrow pointing up."""

import ast
import pathlib
import re

LIBRARY = pathlib.Path(__file__).resolve().parent.parent / "lcflow_tf"
MAX_FUNCTION_LINES = 60  # from the first decorator to the last line, docstring included
MAX_LINE = 100


def function_lengths(root):
  """[(path:line name, lines)] of every function and method under `root`."""
  found = []
  for path in sorted(root.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        first = min([node.lineno] + [d.lineno for d in node.decorator_list])
        found.append((f"{path.relative_to(root.parent)}:{node.lineno} {node.name}",
                      node.end_lineno - first + 1))
  return found


def test_no_long_functions():
  lengths = function_lengths(LIBRARY)
  assert len(lengths) > 100  # the walk found the library
  too_long = [(where, n) for where, n in lengths if n > MAX_FUNCTION_LINES]
  assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {too_long}"


def test_no_long_lines():
  repo = LIBRARY.parent
  paths = (sorted(repo.glob("*.py")) + sorted(LIBRARY.rglob("*.py"))
           + sorted((repo / "benchmarks").rglob("*.py")) + sorted((repo / "tests").glob("*.py")))
  assert len(paths) > 50
  long_lines = [f"{path.relative_to(repo)}:{number} ({len(line)})"
                for path in paths
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if len(line) > MAX_LINE]
  assert not long_lines, f"lines over {MAX_LINE} characters: {long_lines}"


# A date (YYYY-MM or YYYY-MM-DD) or an issue number: history, which belongs in the CHANGELOG.
HISTORY = re.compile(r"\b(?:19|20)\d\d-(?:0[1-9]|1[0-2])(?:-\d\d)?\b|\bissues? #?\d+",
                     re.IGNORECASE)


def history_in(root):
  """["path:line: text"] of every line under `root` (*.py) that holds a date or an issue."""
  return [f"{path.relative_to(root.parent)}:{number}: {line.strip()}"
          for path in sorted(root.rglob("*.py"))
          for number, line in enumerate(path.read_text().splitlines(), 1)
          if HISTORY.search(line)]


def test_history_pattern_finds_dates_and_issues_only():
  for text in ("before 2026-11-30", "(2026-12)", "issue 16", "Issue #3", "see issues 4"):
    assert HISTORY.search(text), text
  for text in ("2048-dimensional", "steps 1000-2000", "arXiv 1908.01686", "tissue 3",
               "issue_16", "2026"):
    assert not HISTORY.search(text), text


def test_library_code_carries_no_history():
  """The code says what and why; when a thing changed is the CHANGELOG's (old formats are read
  by lcflow_tf/compat.py, which names what it reads, not when it was written)."""
  found = history_in(LIBRARY)
  assert not found, f"dates or issue numbers in lcflow_tf/: {found}"


def imports_of(path, package="lcflow_tf"):
  """The `package` modules that the module at `path` imports (at any depth of its code)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names if a.name.split(".")[0] == package}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
        node.module.split(".")[0] == package):
      modules = {f"{node.module}.{a.name}" for a in node.names}
      found |= {m for m in modules if module_path(m) is not None} or {node.module}
  return found


def module_path(name):
  """The file of the lcflow_tf module `name` (None for a name that is no module)."""
  base = LIBRARY.parent.joinpath(*name.split("."))
  for path in (base.with_suffix(".py"), base / "__init__.py"):
    if path.exists():
      return path
  return None


def import_graph():
  """{module: set of lcflow_tf modules it imports} of every module under lcflow_tf/."""
  graph = {}
  for path in sorted(LIBRARY.rglob("*.py")):
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    graph[name] = {m for m in imports_of(path) if m != name}
  return graph


def reachable(graph, start):
  seen, todo = set(), [start]
  while todo:
    for nxt in graph.get(todo.pop(), ()):
      if nxt not in seen:
        seen.add(nxt)
        todo.append(nxt)
  return seen


# What sits below what. A module may import its own layer and those below it; never a module of a
# layer above (the package's __init__, which only re-exports, is left out).
LAYERS = [
    # helpers, the bijectors, the maths of the paper, the networks, the training step's parts
    {"checks", "files", "bijectors", "lc", "networks", "schedules", "averaging", "data",
     "distribute", "steps", "frechet"},
    {"flows"},                                   # the model
    {"export", "viz", "summaries", "checkpoints", "compat"},  # what the model is saved and shown as
    {"sample_quality"},                          # its feature classifier (whose settings
                                                 # EvalConfig holds) and the metric of samples
    {"config"},                                  # the frozen settings of a run
    {"loop", "training", "evaluation"},          # running and evaluating a run
    {"pilots"},                                  # the LC pilots, which drive the Trainer
    {"keras_model", "keras_callbacks"},          # the Keras side of the model and the pilots
    {"pretrained"},                              # the shipped models (a run, an export, .keras)
    {"cli"},                                     # the programs
]


def layer_of(module):
  parts = module.split(".")
  key = parts[1] if len(parts) > 1 else ""
  for level, names in enumerate(LAYERS):
    if key in names:
      return level
  return None


def test_import_graph_has_no_cycle_and_no_arrow_pointing_up():
  graph = import_graph()
  assert {"lcflow_tf.training", "lcflow_tf.pilots", "lcflow_tf.compat"} <= set(graph)
  unplaced = sorted(m for m in graph if m != "lcflow_tf" and layer_of(m) is None)
  assert not unplaced, f"modules in no layer of LAYERS (place them): {unplaced}"
  cycles = sorted(m for m in graph if m in reachable(graph, m))
  assert not cycles, f"modules on an import cycle: {cycles}"
  upward = sorted(f"{m} -> {n}" for m, targets in graph.items() if m != "lcflow_tf"
                  for n in targets if n != "lcflow_tf" and layer_of(n) > layer_of(m))
  assert not upward, f"imports pointing up (see LAYERS): {upward}"


def test_the_trainer_and_the_model_know_nothing_of_pilots_and_older_versions():
  """The pilots drive the Trainer (never the reverse); what older versions wrote is read in
  lcflow_tf/compat.py alone, so the model code describes today's model."""
  graph = import_graph()
  assert "lcflow_tf.pilots" not in reachable(graph, "lcflow_tf.training")
  assert "lcflow_tf.training" in graph["lcflow_tf.pilots"]
  readers = sorted(m for m, targets in graph.items() if "lcflow_tf.compat" in targets)
  assert readers == ["lcflow_tf.cli.export", "lcflow_tf.cli.train", "lcflow_tf.config",
                     "lcflow_tf.keras_model"], readers
