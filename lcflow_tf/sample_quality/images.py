"""The images that sample quality compares: a labelled dataset in memory, and integer images.

The feature classifier (`lcflow_tf.sample_quality.classifier`) reads integer images
`[N, H, W, C]` with values in `[0, num_bins)`, real and generated alike:
  * `load_arrays(dataset)`: both splits of a labelled `ImageDataset`, images and labels, as
    numpy arrays (`DatasetArrays`, whose SHA-1 identifies the data of a cached classifier);
    `check_dataset` refuses a dataset without class labels.
  * `check_images(images, image_shape, num_bins)`: the check every image set passes before
    the classifier sees it.
  * `quantize_samples(x, num_bins)`: model-space samples (floats in [0, 1)) -> integer images
    like the SavedModel's `sample` signature (`floor(x * bins)` clipped to the bins). Samples
    with any non-finite value are excluded and counted; finite values outside [0, 1) are
    clipped and counted.
"""

import dataclasses
import hashlib

import numpy as np
import tensorflow as tf

from lcflow_tf import checks


@dataclasses.dataclass(frozen=True)
class DatasetArrays:
  """A labelled dataset in memory (see `load_arrays`)."""
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  def sha1(self):
    """SHA-1 of the images and labels of both splits (identifies the data of a cache)."""
    digest = hashlib.sha1()
    for array in (self.train_images, self.train_labels, self.test_images, self.test_labels):
      digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def check_dataset(dataset):
  """Raises ValueError unless `dataset` (an `ImageDataset`) has class labels."""
  if not dataset.has_labels:
    try:
      dataset.test_labels()
      reason = f"dataset {dataset.name!r} has no class labels."
    except ValueError as e:
      reason = str(e)
    raise ValueError(f"sample quality needs a dataset with class labels to train its feature "
                     f"classifier: {reason}")


def load_arrays(dataset):
  """Both splits of a labelled `ImageDataset`, images (uint8) and labels (int64), in memory.

  Raises:
    ValueError: the dataset has no labels, a split is empty, or labels and images differ
      in number.
  """
  check_dataset(dataset)

  def read(ds):
    batches = list(ds.batch(8192).as_numpy_iterator())
    return np.concatenate(batches) if batches else None

  arrays = {}
  for split in ("train", "test"):
    images = read(getattr(dataset, split)())
    labels = read(getattr(dataset, split + "_labels")())
    if images is None or len(images) == 0:
      raise ValueError(f"the {split} split of {dataset.name} is empty (0 images).")
    if labels is None or len(labels) != len(images):
      raise ValueError(f"the {split} split of {dataset.name} has {len(images)} images but "
                       f"{0 if labels is None else len(labels)} labels.")
    arrays[split + "_images"] = images.astype(np.uint8)
    arrays[split + "_labels"] = labels.astype(np.int64)
  return DatasetArrays(**arrays)


def check_images(images, image_shape, num_bins, what="images", minimum=1):
  """Returns `images` as a numpy array after checking them; raises ValueError otherwise.

  Integer dtype, shape [N, *image_shape] with N >= `minimum`, values in [0, num_bins).
  """
  if isinstance(images, tf.Tensor):
    images = images.numpy()
  images = np.asarray(images)
  shape = "[N, " + ", ".join(str(d) for d in image_shape) + "]"
  if not np.issubdtype(images.dtype, np.integer):
    raise ValueError(f"{what} must be integer images in [0, {num_bins}) of shape {shape}, "
                     f"got dtype {images.dtype}; turn model-space samples into images with "
                     "sample_quality.quantize_samples.")
  if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape):
    raise ValueError(f"{what} must have shape {shape}, got shape {list(images.shape)}.")
  if len(images) < minimum:
    raise ValueError(f"{what}: need at least {minimum} images, got {len(images)}.")
  if images.size and (images.min() < 0 or images.max() >= num_bins):
    raise ValueError(f"{what} must be integers in [0, {num_bins}), got values in "
                     f"[{images.min()}, {images.max()}].")
  return images


def quantize_samples(x, num_bins):
  """Model-space samples -> integer images, excluding the non-finite ones.

  Args:
    x: float samples [N, H, W, C], meant to lie in [0, 1) (`Flow.sample`).
    num_bins: levels of the images.

  Returns:
    (uint8 images [N', H, W, C] of the samples whose every value is finite,
      number of samples excluded as non-finite,
      number of kept samples with values outside [0, 1), clipped to the outer bins).

  Raises:
    ValueError: `x` is not a float array [N, H, W, C], or `num_bins` not in 2..256.
  """
  if isinstance(x, tf.Tensor):
    x = x.numpy()
  x = np.asarray(x)
  if not np.issubdtype(x.dtype, np.floating) or x.ndim != 4:
    raise ValueError(f"quantize_samples: x must be float samples [N, H, W, C] in [0, 1), got "
                     f"dtype {x.dtype} and shape {list(x.shape)}.")
  checks.check_int("num_bins", num_bins, 2, 256, caller="quantize_samples", numpy_ok=True)
  flat = x.reshape(len(x), -1).astype(np.float64)
  finite = np.all(np.isfinite(flat), axis=1)
  kept = flat[finite]
  outside = int(np.sum(np.any((kept < 0.0) | (kept >= 1.0), axis=1)))
  k = np.clip(np.floor(kept * num_bins), 0, num_bins - 1).astype(np.uint8)
  return k.reshape((-1,) + x.shape[1:]), int(np.sum(~finite)), outside
