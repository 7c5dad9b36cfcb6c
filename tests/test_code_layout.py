"""The code's shape (issue 15): no function in lcflow_tf/ longer than ~60 lines, no line over
100 characters in the library, the scripts, the benchmarks and the tests."""

import ast
import pathlib

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
           + sorted((repo / "benchmarks").glob("*.py")) + sorted((repo / "tests").glob("*.py")))
  assert len(paths) > 50
  long_lines = [f"{path.relative_to(repo)}:{number} ({len(line)})"
                for path in paths
                for number, line in enumerate(path.read_text().splitlines(), 1)
                if len(line) > MAX_LINE]
  assert not long_lines, f"lines over {MAX_LINE} characters: {long_lines}"
