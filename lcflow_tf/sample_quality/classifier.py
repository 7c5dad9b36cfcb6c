"""The feature classifier of sample quality, trained once per dataset and cached on disk.

The FID of Heusel et al. (arXiv:1706.08500) compares generated and real images through the
penultimate features of an ImageNet Inception network. Here no pretrained weights can be
downloaded, so the features come from a small CNN trained in this repository on the
dataset's own training split and labels: a domain-specific FID. Its values depend on that
classifier; they are comparable between models evaluated with the same cached classifier,
not with published FIDs.

  * `ClassifierConfig`: its training settings (part of `EvalConfig` and of the cache key).
  * `load_or_train(dataset, directory, config)`: the `FeatureClassifier` of a labelled
    dataset, trained once and cached in `directory` (default `default_classifier_dir`, under
    `default_cache_root`) as `classifier.json` (dataset, image shape, bins, a SHA-1 of the
    images and labels, the settings, test accuracy, reference distances, date) plus a Keras
    weights file. A cache whose architecture, dataset, data or settings differ (`_KEY_FIELDS`)
    is refused with a `ValueError` naming the differences (never silently reused);
    `retrain=True` replaces it.
  * `FeatureClassifier.features(images)`: penultimate activations (float64) of integer
    images `[N, H, W, C]` in `[0, num_bins)` (checked by `images.check_images`), fed to the
    network as `k / (num_bins - 1)`; real and generated images go through the same path.
  * `reference_distances`: the distances between real image sets that a classifier's
    `classifier.json` records, what sample-size noise alone gives.

The metric on generated images is `lcflow_tf.sample_quality.metric`.
"""

import dataclasses
import datetime
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from lcflow_tf import checks
from lcflow_tf import files
from lcflow_tf import frechet
from lcflow_tf.sample_quality import images as images_lib

INFO_FILE = "classifier.json"
CACHE_ENV = "LCFLOW_TF_CACHE"
# Bumped whenever the network or the training recipe changes, so old caches are refused.
ARCHITECTURE = "conv32-pool-conv64/2-dense(feature_dim, relu)-dropout0.3-dense; v1"
_DROPOUT = 0.3
_FEATURE_BATCH = 1000
# The fields of classifier.json that must agree for a cache to be reused.
_KEY_FIELDS = ("architecture", "dataset", "image_shape", "num_bins", "num_classes",
               "num_train", "num_test", "data_sha1", "config")


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Training settings of the feature classifier (part of the cache key).

  Attributes:
    steps: Adam steps on the training split (cosine decay of the learning rate to 0).
    batch_size: images per step.
    learning_rate: initial Adam learning rate.
    feature_dim: units of the penultimate (feature) layer.
    seed: seed of the initial weights, the shuffling and the dropout.
  """
  steps: int = 2400
  batch_size: int = 128
  learning_rate: float = 1e-3
  feature_dim: int = 128
  seed: int = 0

  def __post_init__(self):
    checks.check_int("classifier steps", self.steps, 1)
    checks.check_int("classifier batch_size", self.batch_size, 1)
    checks.check_number("classifier learning_rate", self.learning_rate, 0.0)
    checks.check_int("classifier feature_dim", self.feature_dim, 1)
    checks.check_int("classifier seed", self.seed, 0)


def default_cache_root():
  """$LCFLOW_TF_CACHE, else $XDG_CACHE_HOME/lcflow_tf, else ~/.cache/lcflow_tf."""
  if os.environ.get(CACHE_ENV):
    return os.environ[CACHE_ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "lcflow_tf")


def default_classifier_dir(dataset):
  """`<default_cache_root()>/classifiers/<name>_<num_bins>bins` for an `ImageDataset`.

  A per-user cache, not a run directory: every run evaluated on the same data shares one
  classifier, so their distances are comparable.
  """
  name = dataset.name.replace("/", "_")
  return os.path.join(default_cache_root(), "classifiers", f"{name}_{dataset.num_bins}bins")


def build_classifier(image_shape, num_classes, config):
  """The CNN: (model with outputs [features, logits], model with the logits only).

  conv 3x3 32 (ReLU) -> max-pool 2 -> conv 3x3 64 stride 2 (ReLU) -> dense `feature_dim`
  (ReLU; the features) -> dropout 0.3 (training only) -> dense `num_classes` (the logits).
  "Same" padding everywhere, so any image size works (8x8 digits too). About 1.5M
  multiply-adds per 28x28 image.
  """
  def init(i):
    return keras.initializers.GlorotUniform(seed=config.seed * 16 + i)

  inputs = keras.Input(tuple(image_shape), name="images")
  x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", kernel_initializer=init(0),
                          name="conv1")(inputs)
  x = keras.layers.MaxPooling2D(2, padding="same", name="pool1")(x)
  x = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu",
                          kernel_initializer=init(1), name="conv2")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  features = keras.layers.Dense(config.feature_dim, activation="relu",
                                kernel_initializer=init(2), name="features")(x)
  x = keras.layers.Dropout(_DROPOUT, seed=config.seed, name="dropout")(features)
  logits = keras.layers.Dense(num_classes, kernel_initializer=init(3), name="logits")(x)
  return (keras.Model(inputs, [features, logits], name="features_and_logits"),
          keras.Model(inputs, logits, name="classifier"))


class FeatureClassifier:
  """A trained classifier of one dataset and its penultimate features.

  Attributes:
    directory: the cache directory it was loaded from or saved to.
    info: the contents of its `classifier.json`.
    image_shape: the shape of the images it accepts.
    num_bins: the integer levels of the images it accepts.
    test_accuracy: its accuracy on the dataset's test split.
  """

  def __init__(self, model, info, directory):
    """`model`: the first model of `build_classifier`, trained; `info`: classifier.json."""
    self.directory = directory
    self.info = info
    self.image_shape = tuple(info["image_shape"])
    self.num_bins = int(info["num_bins"])
    self._apply_fn = tf.function(
        lambda x: model(x, training=False), autograph=False,
        input_signature=[tf.TensorSpec((None,) + self.image_shape, tf.float32)])

  @property
  def test_accuracy(self):
    return float(self.info["test_accuracy"])

  def features(self, images):
    """Penultimate activations of integer `images` [N >= 1, H, W, C]: float64 [N, F].

    Raises:
      ValueError: `images` are not integers in [0, num_bins), or not of shape
        [N, *image_shape], or N < 1.
    """
    return self.features_and_predictions(images, "features")[0]

  def features_and_predictions(self, images, what="images"):
    """(features float64 [N, F], predicted classes int64 [N]) of integer `images`.

    Raises:
      ValueError: as `features` (naming `what`).
    """
    images = images_lib.check_images(images, self.image_shape, self.num_bins, what)
    features, classes = [], []
    for start in range(0, len(images), _FEATURE_BATCH):
      batch = images[start:start + _FEATURE_BATCH].astype(np.float32) / (self.num_bins - 1)
      f, logits = self._apply_fn(tf.constant(batch))
      features.append(f.numpy().astype(np.float64))
      classes.append(np.argmax(logits.numpy(), axis=1))
    return np.concatenate(features), np.concatenate(classes).astype(np.int64)

  def frechet_distance(self, generated, reference):
    """Frechet distance between the features of two sets of integer images.

    Args:
      generated: integer images [N >= 2, H, W, C] in [0, num_bins) (see
        `images.quantize_samples` for model-space samples).
      reference: integer images [M >= 2, H, W, C], e.g. the test split.

    Returns:
      float, >= 0; symmetric in its arguments.

    Raises:
      ValueError: bad images (see `features`) or fewer than 2 of either.
    """
    images_lib.check_images(generated, self.image_shape, self.num_bins, "generated", minimum=2)
    images_lib.check_images(reference, self.image_shape, self.num_bins, "reference", minimum=2)
    return frechet.frechet_distance_of_features(self.features(generated), self.features(reference))


# --- training and the cache ----------------------------------------------------------------------
def load_or_train(dataset, directory=None, config=None, retrain=False, arrays=None):
  """The `FeatureClassifier` of `dataset`: loaded from `directory`, or trained and saved there.

  Args:
    dataset: a labelled `ImageDataset`.
    directory: the cache directory (default `default_classifier_dir(dataset)`).
    config: a `ClassifierConfig` (default settings when None).
    retrain: train even if `directory` holds a classifier, and replace it.
    arrays: `images.load_arrays(dataset)`, when the caller has it already.

  Returns:
    the `FeatureClassifier`.

  Raises:
    ValueError: the dataset has no labels; `directory` cannot be created; it holds a
      classifier of another dataset, data or settings (unless `retrain`), or an unreadable
      one.
  """
  config = config or ClassifierConfig()
  if not isinstance(config, ClassifierConfig):
    raise ValueError(f"config must be a ClassifierConfig, got {config!r}.")
  images_lib.check_dataset(dataset)
  directory = directory or default_classifier_dir(dataset)
  files.check_creatable_dir(directory, "classifier_dir")
  arrays = arrays or images_lib.load_arrays(dataset)
  key = _cache_key(dataset, arrays, config)
  info_path = os.path.join(directory, INFO_FILE)
  old = _read_info(info_path) if os.path.exists(info_path) else None
  if old is not None and not retrain:
    differences = _differences(old, key)
    if differences:
      raise ValueError(f"classifier_dir {directory} holds a classifier of other data or "
                       f"settings ({'; '.join(differences)}); pass another classifier_dir "
                       "(eval.py --classifier_dir), or delete it to train a new one.")
    return _load(old, directory)
  classifier = _train(dataset, arrays, config, key, directory)
  if old is not None and old.get("weights_file") != classifier.info["weights_file"]:
    stale = os.path.join(directory, os.path.basename(str(old.get("weights_file"))))
    if os.path.isfile(stale):
      os.remove(stale)
  return classifier


def _differences(old, key):
  """["name=old there but new now"] over the cache key (the settings field by field)."""
  found = []
  for name, value in key.items():
    if name == "config" and isinstance(old.get(name), dict):
      found += [f"classifier {field}={old[name].get(field)!r} there but {v!r} now"
                for field, v in value.items() if old[name].get(field) != v]
    elif old.get(name) != value:
      found.append(f"{name}={old.get(name)!r} there but {value!r} now")
  return found


def _cache_key(dataset, arrays, config):
  return {"architecture": ARCHITECTURE, "dataset": dataset.name,
          "image_shape": [int(d) for d in dataset.image_shape],
          "num_bins": int(dataset.num_bins), "num_classes": int(dataset.num_classes),
          "num_train": int(len(arrays.train_images)), "num_test": int(len(arrays.test_images)),
          "data_sha1": arrays.sha1(), "config": dataclasses.asdict(config)}


def _read_info(path):
  try:
    with open(path) as f:
      info = json.load(f)
    if not isinstance(info, dict):
      raise ValueError("not a JSON object")
    missing = [k for k in _KEY_FIELDS + ("test_accuracy", "weights_file") if k not in info]
    if missing:
      raise ValueError(f"fields {missing} are missing")
    return info
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is not a readable classifier cache ({type(e).__name__}: {e}); "
                     "delete it or pass another classifier_dir.") from None


def _load(info, directory):
  models = build_classifier(info["image_shape"], info["num_classes"],
                            ClassifierConfig(**info["config"]))
  weights = os.path.join(directory, os.path.basename(str(info.get("weights_file"))))
  try:
    models[1].load_weights(weights)
  except (OSError, ValueError, KeyError) as e:
    raise ValueError(f"cannot load the classifier weights {weights} "
                     f"({type(e).__name__}: {str(e)[:200]}); delete {directory} to train a new "
                     "classifier.") from None
  logging.info("Loaded the feature classifier from %s (test accuracy %.4f).", directory,
               info["test_accuracy"])
  return FeatureClassifier(models[0], info, directory)


def _train(dataset, arrays, config, key, directory):
  """Trains a classifier, measures it, and saves weights then classifier.json atomically."""
  model, logits_model = build_classifier(dataset.image_shape, dataset.num_classes, config)
  scale = 1.0 / (dataset.num_bins - 1)
  n = len(arrays.train_images)
  stream = (tf.data.Dataset.from_tensor_slices((arrays.train_images, arrays.train_labels))
            .shuffle(n, seed=config.seed, reshuffle_each_iteration=True).repeat()
            .batch(config.batch_size, drop_remainder=n >= config.batch_size)
            .map(lambda x, y: (tf.cast(x, tf.float32) * scale, y))
            .prefetch(tf.data.AUTOTUNE))
  schedule = keras.optimizers.schedules.CosineDecay(config.learning_rate, config.steps)
  logits_model.compile(optimizer=keras.optimizers.Adam(schedule),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  logging.info("Training the feature classifier of %s (%d steps of %d images) for %s.",
               dataset.name, config.steps, config.batch_size, directory)
  t0 = time.time()
  logits_model.fit(stream, steps_per_epoch=config.steps, epochs=1, verbose=0, shuffle=False)
  seconds = time.time() - t0
  info = {**key, "training_seconds": seconds,
          "date": datetime.datetime.now().isoformat(timespec="seconds"),
          "tensorflow": tf.__version__, "keras": keras.__version__, "test_accuracy": None}
  classifier = FeatureClassifier(model, info, directory)
  train_features, train_classes = classifier.features_and_predictions(arrays.train_images)
  test_features, test_classes = classifier.features_and_predictions(arrays.test_images)
  info["test_accuracy"] = float(np.mean(test_classes == arrays.test_labels))
  info["train_accuracy"] = float(np.mean(train_classes == arrays.train_labels))
  info["reference_distances"] = reference_distances(train_features, test_features)
  os.makedirs(directory, exist_ok=True)
  token = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
  info["weights_file"] = f"classifier-{token}.weights.h5"
  with files.staged_file(os.path.join(directory, info["weights_file"]), ".weights.h5") as tmp:
    logits_model.save_weights(tmp)
  files.write_json_atomic(os.path.join(directory, INFO_FILE), info)
  logging.info("Feature classifier: test accuracy %.4f after %.0f s; saved in %s.",
               info["test_accuracy"], seconds, directory)
  return classifier


def reference_distances(train_features, test_features):
  """Distances between real image sets: what sample-size noise alone gives.

  Args:
    train_features: features of all training images.
    test_features: features of all test images.

  Returns:
    dict: `train_vs_test` (all training images against all test images) and
    `test_half_vs_half` (first against second half of the test split), with their sizes.
  """
  test = test_features
  half = len(test) // 2
  result = {"train_vs_test": frechet.frechet_distance_of_features(train_features, test),
            "num_train": int(len(train_features)), "num_test": int(len(test))}
  if half >= 2:
    result["test_half_vs_half"] = frechet.frechet_distance_of_features(test[:half],
                                                                       test[half:2 * half])
    result["test_half_size"] = int(half)
  return result
