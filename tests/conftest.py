"""Test set-up shared by every test module.

Two tiers: `pytest -q` runs the default suite (README's test command, meant to stay under 8
minutes on 2 CPU cores); tests marked `slow` (end-to-end runs of the benchmark scripts, the
SIGKILL crash-safety loop, the worked examples that train) are deselected unless `--slow` is
given: `pytest -q --slow -m slow` runs only them, `pytest -q --slow` everything. .ci/run runs
both tiers.

The process gets two logical CPU devices before TensorFlow initialises, so tests can compare
MirroredStrategy over 2 replicas with a single device. Shared fixtures: `digits`, the embedded
scikit-learn digits dataset, loaded once per session; `run_script`, the CLIs run to their end.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


def pytest_addoption(parser):
  parser.addoption("--slow", action="store_true",
                   help="also run the tests marked slow (deselected by default)")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--slow"):
    return
  kept, slow = [], []
  for item in items:
    (slow if item.get_closest_marker("slow") else kept).append(item)
  if slow:
    config.hook.pytest_deselected(items=slow)
    items[:] = kept


@pytest.fixture(scope="session")
def digits():
  """The embedded digits `ImageDataset` (lcflow_tf.data), shared by the test modules."""
  from lcflow_tf import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset("digits")


@pytest.fixture(scope="session")
def two_cpus():
  """One MirroredStrategy over the 2 logical CPUs, shared by every test of a process.

  Each MirroredStrategy numbers its collective ops from the same start; TensorFlow keeps the
  shapes of a collective instance for the whole process, so a second strategy whose model
  differs would reuse an instance number with another shape (`InvalidArgumentError` in
  whichever test comes second in the same pytest-xdist worker). Sharing one strategy
  continues its numbering (as a nosplit run's pilots and model do in train.py).
  """
  return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


@pytest.fixture
def run_script():
  """run_script(script, *args): `python script args` as a user runs it, to its end; a
  `subprocess.CompletedProcess` (keywords `timeout`, `cwd`, `env` as `cli_runner.Launcher.run`
  takes them). Each run is a fork of one process that imported what the
  scripts import (`tests/cli_runner.Launcher()`): one TensorFlow start-up per test, not one
  per run."""
  from tests import cli_runner  # pylint: disable=g-import-not-at-top
  launcher = cli_runner.Launcher()
  yield lambda script, *args, **kwargs: launcher.run(*args, script=script, **kwargs)
  launcher.close()
