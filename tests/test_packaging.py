"""The package as a user installs it: its wheel holds lcflow_tf alone and, installed into a
fresh venv, runs README's ten-line snippet and the console scripts outside the checkout.

A venv with TensorFlow built from scratch downloads ~1 GB, so the fresh venv (made without
pip, nothing installed) gets the wheel with `--no-deps --no-index` and, for the dependencies,
this venv's path (its site-packages) behind its own, through a .pth file. Its own site-packages
comes first on its path: `lcflow_tf` imports from there, not from the checkout nor from this
venv (where it may be installed too). The build is offline as well (`--no-build-isolation`:
this venv's setuptools, requirements.txt), from a copy of the checkout, since setuptools
writes build/ and lcflow_tf.egg-info into the tree it builds.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile

import lcflow_tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Console script -> the module of its program, whose docstring `--help` shows.
PROGRAMS = {"lcflow-train": "lcflow_tf/cli/train.py", "lcflow-eval": "lcflow_tf/cli/evaluate.py",
            "lcflow-export": "lcflow_tf/cli/export.py"}
# Not copied into the tree the wheel is built from: what is no source of the checkout.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv*", "runs", "tmp", "build", "dist",
                                     "*.egg-info", "__pycache__", ".pytest_cache")
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TF_CPP_MIN_LOG_LEVEL": "2"}


def run(*args, cwd, timeout=300):
  """`args` run in `cwd` without PYTHONPATH; the `subprocess.CompletedProcess`."""
  return subprocess.run([str(a) for a in args], cwd=str(cwd), env=ENV, capture_output=True,
                        text=True, timeout=timeout, check=False)


def build_wheel(tmp_path):
  """Builds the wheel of a copy of the checkout, offline; its path."""
  source, dist = tmp_path / "source", tmp_path / "dist"
  shutil.copytree(REPO, source, ignore=NOT_SOURCES)
  built = run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
              "--no-index", "-w", dist, source, cwd=tmp_path)
  assert built.returncode == 0, built.stderr[-3000:]
  wheels = sorted(dist.iterdir())
  assert len(wheels) == 1, wheels
  return wheels[0]


def install_in_fresh_venv(wheel, root):
  """A venv at `root` with `wheel` installed and, behind its own site-packages, what this venv's
  Python imports from when started outside the checkout; the venv's site-packages."""
  made = run(sys.executable, "-m", "venv", "--without-pip", root, cwd=root.parent)
  assert made.returncode == 0, made.stderr
  python = root / "bin" / "python"
  installed = run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
                  "--no-index", wheel, cwd=root.parent)
  assert installed.returncode == 0, installed.stderr[-3000:]
  purelib = run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                cwd=root.parent).stdout.strip()
  outer = run(sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))",
              cwd=root.parent)
  assert outer.returncode == 0, outer.stderr
  with open(os.path.join(purelib, "dependencies_of_the_test_venv.pth"), "w") as f:
    f.write("".join(path + "\n" for path in json.loads(outer.stdout) if os.path.isdir(path)))
  return purelib


def readme_snippet():
  """The ```python block after README's "## The library in ten lines"."""
  with open(os.path.join(REPO, "README.md")) as f:
    section = f.read().split("\n## The library in ten lines\n", 1)[1]
  return section.split("```python\n", 1)[1].split("```", 1)[0]


def usage(module_path):
  """The docstring of the module at `module_path` (in the checkout), as `--help` prints it."""
  with open(os.path.join(REPO, module_path)) as f:
    return ast.get_docstring(ast.parse(f.read()), clean=False)


def test_wheel_holds_the_package_and_its_console_scripts(tmp_path):
  wheel = build_wheel(tmp_path)
  assert wheel.name == f"lcflow_tf-{lcflow_tf.__version__}-py3-none-any.whl"
  info = f"lcflow_tf-{lcflow_tf.__version__}.dist-info/"
  with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    entry_points = z.read(info + "entry_points.txt").decode()
  outside = [n for n in names if not n.startswith(("lcflow_tf/", info))]
  assert not outside, f"the wheel holds more than lcflow_tf: {outside}"
  for module in ["lcflow_tf/__init__.py", "lcflow_tf/bijectors/squeeze.py", *PROGRAMS.values()]:
    assert module in names
  shipped = [f"lcflow_tf/pretrained/{name}/{f}" for name in lcflow_tf.pretrained.NAMES
             for f in [*lcflow_tf.pretrained.manifest(name)["files"], "manifest.json"]]
  assert not set(shipped) - set(names), "pretrained model files missing from the wheel"
  assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")], "bytecode shipped"
  for script, module in PROGRAMS.items():
    name = module[:-len(".py")].replace("/", ".")
    assert f"{script} = {name}:run" in entry_points.splitlines()

  site_packages = install_in_fresh_venv(wheel, tmp_path / "venv")
  elsewhere = tmp_path / "elsewhere"  # outside the checkout: nothing there to import
  elsewhere.mkdir()
  snippet = readme_snippet() + (
      "\nimport json\nprint(json.dumps(dict(file=lf.__file__, bpd=tuple(bpd.shape), "
      "samples=tuple(samples.shape), finite=bool(np.isfinite(bpd).all()))))\n")
  ran = run(tmp_path / "venv" / "bin" / "python", "-c", snippet, cwd=elsewhere)
  assert ran.returncode == 0, ran.stderr[-3000:]
  result = json.loads(ran.stdout.strip().splitlines()[-1])
  assert result["file"] == os.path.join(site_packages, "lcflow_tf", "__init__.py")
  assert result["bpd"] == [64] and result["samples"] == [16, 8, 8, 1] and result["finite"]
  verified = run(tmp_path / "venv" / "bin" / "python", "-c",
                 "import lcflow_tf; print(lcflow_tf.pretrained.path('fashion_mnist_glow', "
                 "'saved_model'))", cwd=elsewhere)
  assert verified.returncode == 0, verified.stderr[-3000:]
  assert verified.stdout.strip().splitlines()[-1] == os.path.join(
      site_packages, "lcflow_tf", "pretrained", "fashion_mnist_glow", "saved_model")

  for script, module in PROGRAMS.items():
    helped = run(tmp_path / "venv" / "bin" / script, "--help", cwd=elsewhere)
    # absl ends --help with exit status 1, as `python train.py --help` does.
    assert helped.returncode == 1 and "Traceback" not in helped.stderr, helped.stderr[-3000:]
    assert helped.stdout.startswith(usage(module)), helped.stdout[:500]
    flags_part = helped.stdout[len(usage(module)):]
    assert f"{tmp_path / 'venv' / 'bin' / script}:" in flags_part  # the program's own flags
    assert "--model_dir:" in flags_part and "--[no]help" not in flags_part
