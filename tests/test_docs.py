"""The documentation site (mkdocs.yml, docs/) stays whole: every module has an API page, the flag
reference matches the flags, the guide's snippets run, and the site builds in strict mode."""

import difflib
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "lcflow_tf"
DOCS = ROOT / "docs"
FLAG_REFERENCE = DOCS / "reference" / "flags.md"
REGENERATE = ".venv/bin/python -m lcflow_tf.cli.flag_reference docs/reference/flags.md"
GUIDE_PAGES = sorted(p.name for p in (DOCS / "guide").glob("*.md"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def library_modules():
  """Dotted names of lcflow_tf's modules and subpackages (the root package itself excluded)."""
  names = []
  for path in sorted(LIBRARY.rglob("*.py")):
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
      parts = parts[:-1]
    if len(parts) > 1 and not any(p.startswith("_") for p in parts):
      names.append(".".join(parts))
  return names


def documented_modules():
  """{dotted name: API page} of every `::: name` directive in docs/api/."""
  found = {}
  for page in sorted((DOCS / "api").glob("*.md")):
    for name in re.findall(r"^::: (lcflow_tf[\w.]*)\s*$", page.read_text(), re.M):
      found[name] = page.name
  return found


def test_every_module_has_an_api_page_in_the_nav():
  modules = library_modules()
  assert "lcflow_tf.flows" in modules and "lcflow_tf.bijectors.squeeze" in modules
  documented = documented_modules()
  missing = [m for m in modules if m not in documented]
  assert not missing, (
      f"modules without an API page: {missing}. Add docs/api/<module>.md holding "
      "'::: lcflow_tf.<module>' (or a directive on the page of its package) and list the page "
      "in mkdocs.yml's nav under 'API reference'.")
  stale = [name for name in documented if name not in modules]
  assert not stale, f"API pages name modules that do not exist: {stale}"
  nav = (ROOT / "mkdocs.yml").read_text()
  unlisted = sorted({f"api/{page}" for page in documented.values()} - set(
      re.findall(r"api/\w+\.md", nav)))
  assert not unlisted, f"API pages missing from mkdocs.yml's nav: {unlisted}"


def test_flag_reference_is_generated_from_the_flags():
  ran = subprocess.run([sys.executable, "-m", "lcflow_tf.cli.flag_reference"], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=300, check=False)
  assert ran.returncode == 0, ran.stderr[-3000:]
  committed = FLAG_REFERENCE.read_text()
  for program in ["lcflow-train", "lcflow-eval", "lcflow-export"]:
    assert f"\n## {program}\n" in ran.stdout
  for flag in ["--model_dir", "--split", "--lc_pilot", "--sample_quality", "--precision"]:
    assert f"| `{flag}` |" in ran.stdout
  diff = "".join(difflib.unified_diff(committed.splitlines(True), ran.stdout.splitlines(True),
                                      "docs/reference/flags.md (committed)", "the flags now"))
  assert not diff, f"docs/reference/flags.md is out of date; regenerate it with\n  {REGENERATE}\n" \
      f"{diff[:4000]}"


def python_blocks(page):
  """The ```python blocks of docs/guide/`page`, in order."""
  return re.findall(r"```python\n(.*?)```", (DOCS / "guide" / page).read_text(), re.S)


@pytest.mark.parametrize("page", [p for p in GUIDE_PAGES if python_blocks(p)])
def test_guide_python_blocks_run(page, tmp_path, monkeypatch):
  """Each guide page's ```python blocks run in order, in one namespace per page; their own
  asserts check what they show. Temporary files go to this test's directory."""
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  blocks = python_blocks(page)
  namespace = {}
  for block in blocks:
    exec(compile(block, f"docs/guide/{page}", "exec"), namespace)  # pylint: disable=exec-used


def test_guide_has_its_pages():
  assert GUIDE_PAGES == ["bijectors.md", "distributed.md", "keras.md", "lc-split.md",
                         "numerics.md", "pretrained.md", "serving.md", "training.md"]


def test_docstring_warnings_stay_on():
  """griffe's docstring warnings (a documented parameter the signature lacks, a malformed
  section) are what make the strict build fail on such a docstring: mkdocs.yml keeps them on."""
  options = (ROOT / "mkdocs.yml").read_text()
  assert "docstring_style: google" in options
  switched_off = re.findall(r"^\s*(warnings|warn_unknown_params):\s*false\s*$", options, re.M)
  assert not switched_off, f"mkdocs.yml switches off griffe's docstring warnings: {switched_off}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None
    or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="mkdocs and mkdocstrings are not installed (.venv/bin/pip install -r "
    "requirements-docs.txt; .ci/run installs them and builds the site after the tests)")
def test_site_builds_in_strict_mode(tmp_path):
  """`mkdocs build --strict`: offline, any broken link, nav entry or cross-reference fails.
  Took 3-7 s on 2 shared AMD EPYC cores (2026-12-07)."""
  started = time.monotonic()
  built = subprocess.run(
      [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
      cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600, check=False)
  seconds = time.monotonic() - started
  assert built.returncode == 0, f"mkdocs build --strict failed after {seconds:.0f} s:\n" + (
      built.stdout + built.stderr)[-5000:]
  for page in ["index.html", "guide/lc-split/index.html", "api/flows/index.html",
               "reference/flags/index.html", "changelog/index.html"]:
    assert (tmp_path / "site" / page).is_file(), page
  flows_page = (tmp_path / "site" / "api" / "flows" / "index.html").read_text()
  assert 'id="lcflow_tf.flows.build_flow"' in flows_page  # rendered from the docstrings
