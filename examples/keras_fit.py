"""Trains a Glow on scikit-learn's digits the Keras way: compile, fit, callbacks, save, export.

  python examples/keras_fit.py                       # 600 steps, ~2 min on 2 CPU cores
  python examples/keras_fit.py --steps 40 --out_dir /tmp/keras_fit

Writes into OUT_DIR: `best.keras` (the model with the lowest validation bits/dim, by
`ModelCheckpoint`), `backup/` (`BackupAndRestore`: rerun the command after an interruption and
`fit` resumes from the last finished epoch), `logs/` (TensorBoard), `final.keras` and the
SavedModel `export/`. Prints the test bits/dim before and after training, of the reloaded
model, and of the SavedModel's `log_prob` signature.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import lcflow_tf as lf  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import schedules  # pylint: disable=g-import-not-at-top


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=600, help="training steps (>= 20)")
  parser.add_argument("--out_dir", default="runs/keras_fit", help="where the files go")
  args = parser.parse_args()
  if args.steps < 20:
    parser.error(f"--steps must be >= 20 (10 epochs of at least 2 steps), got {args.steps}")

  digits = data.load_dataset("digits")  # uint8 images in [0, 17), 1500 train / 297 test
  train = digits.train().shuffle(1500, seed=0).repeat().batch(64, drop_remainder=True)
  test = digits.test().batch(297)
  keras.utils.set_random_seed(0)
  model = lf.FlowModel(lf.FlowConfig(image_shape=digits.image_shape, levels=2,
                                     steps_per_level=4, hidden_channels=64),
                       num_bins=digits.num_bins)
  # Keras' weight average starts from the initial weights, with no warm-up: keep its horizon,
  # 1 / (1 - momentum) steps, well below the run's length. fit ends with the averaged weights.
  model.compile(optimizer=keras.optimizers.Adam(
      schedules.WarmupDecay(1e-3, warmup_steps=min(200, args.steps // 4), kind="cosine",
                            decay_steps=args.steps),
      use_ema=True, ema_momentum=max(0.9, 1.0 - 20.0 / args.steps)))
  model.initialize(next(iter(train)))  # ActNorm on one batch (fit would do it too)
  print(f"test bits/dim before training: "
        f"{model.evaluate(test, verbose=0, return_dict=True)['bits_per_dim']:.3f}")

  callbacks = [
      keras.callbacks.ModelCheckpoint(os.path.join(args.out_dir, "best.keras"),
                                      monitor="val_bits_per_dim", mode="min",
                                      save_best_only=True),
      keras.callbacks.BackupAndRestore(os.path.join(args.out_dir, "backup")),
      keras.callbacks.EarlyStopping(monitor="val_bits_per_dim", mode="min", patience=3),
      keras.callbacks.TensorBoard(os.path.join(args.out_dir, "logs")),
  ]
  model.fit(train, steps_per_epoch=args.steps // 10, epochs=10, validation_data=test,
            callbacks=callbacks, verbose=2)
  after = model.evaluate(test, verbose=0, return_dict=True)["bits_per_dim"]
  print(f"test bits/dim after training: {after:.3f}")

  path = os.path.join(args.out_dir, "final.keras")
  model.save(path)
  reloaded = keras.models.load_model(path)
  images = np.stack(list(digits.test().take(64).as_numpy_iterator()))
  same = np.array_equal(reloaded.predict(images, verbose=0), model.predict(images, verbose=0))
  print(f"reloaded {path}: identical log-densities {same}; samples "
        f"{reloaded.sample(16, temperature=0.7, seed=1).shape}")

  export_dir = model.export(os.path.join(args.out_dir, "export"), overwrite=True)
  served = tf.saved_model.load(export_dir).signatures["log_prob"](images=tf.constant(images))
  print(f"SavedModel {export_dir}: bits/dim at the bin centres of 64 test images "
        f"{float(np.mean(served['bits_per_dim'])):.3f}")


if __name__ == "__main__":
  main()
