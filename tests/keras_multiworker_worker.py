"""One worker of the FlowModel test in tests/test_multiworker.py (also its reference run).

  python tests/keras_multiworker_worker.py STEPS OUT.npz [STRATEGY]

Fits `FlowModel` (tiny Glow, digits) for STEPS steps of global batch 16 on
`keras_model.train_stream` under `MultiWorkerMirroredStrategy` (cluster from TF_CONFIG), or
without a strategy when STRATEGY is `default`, and writes OUT.npz: `losses` (per step),
`num_replicas` and the final trainable weights `w0, w1, ...`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import lcflow_tf as lf  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import keras_model  # pylint: disable=g-import-not-at-top

CONFIG = lf.FlowConfig(image_shape=(8, 8, 1), levels=2, steps_per_level=1, hidden_channels=8)
BATCH = 16


def fit(steps, strategy=None):
  """(losses per step, trainable weights, replicas) of a FlowModel fit under `strategy`."""
  digits = data.load_dataset("digits")
  scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
  with scope:
    keras.utils.set_random_seed(0)
    model = lf.FlowModel(CONFIG, num_bins=digits.num_bins)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
  model.initialize(next(iter(keras_model.train_stream(digits, BATCH))))  # the global batch 0
  stream = keras_model.train_stream(digits, BATCH, strategy=strategy)
  history = model.fit(stream, steps_per_epoch=1, epochs=steps, verbose=0).history
  return (np.array(history["loss"]), [v.numpy() for v in model.trainable_weights],
          model.distribute_strategy.num_replicas_in_sync)


def main(steps, out, strategy="multi_worker"):
  chosen = tf.distribute.MultiWorkerMirroredStrategy() if strategy == "multi_worker" else None
  losses, weights, replicas = fit(int(steps), chosen)
  np.savez(out, losses=losses, num_replicas=replicas,
           **{f"w{i}": w for i, w in enumerate(weights)})


if __name__ == "__main__":
  main(*sys.argv[1:])
