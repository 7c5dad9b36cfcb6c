"""Test set-up shared by every test module.

The process gets two logical CPU devices before TensorFlow initialises, so tests can compare
MirroredStrategy over 2 replicas with a single device. Shared fixture: `digits`, the embedded
scikit-learn digits dataset, loaded once per session.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=g-import-not-at-top

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


@pytest.fixture(scope="session")
def digits():
  """The embedded digits `ImageDataset` (lcflow_tf.data), shared by the test modules."""
  from lcflow_tf import data  # pylint: disable=g-import-not-at-top
  return data.load_dataset("digits")
