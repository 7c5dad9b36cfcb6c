"""Image datasets as `tf.data` pipelines, and uniform dequantization.

Every dataset is exposed the same way, as an `ImageDataset` whose `train()` and
`test()` return unbatched integer images `uint8[H, W, C]` with values in
`[0, num_bins)`. Sources:

* `digits`: scikit-learn's 8x8 digits (17 native levels, 0..16), embedded in
  scikit-learn, so it works offline. Fixed held-out split: the indices are
  permuted with `np.random.RandomState(0)`; the first 1500 are train and the
  last 297 test.
* `fashion_mnist`: the IDX files of Debian's `dataset-fashion-mnist` package
  (or any directory holding `train-images-idx3-ubyte[.gz]` and
  `t10k-images-idx3-ubyte[.gz]`); falls back to TFDS when they are absent.
* `mnist`, `cifar10`, `celeb_a`, `downsampled_imagenet/32x32`, `/64x64`:
  streamed from `tensorflow_datasets` (downloaded and prepared on first use,
  which needs internet). CelebA follows the RealNVP/Glow recipe: centre crop
  148x148, area-resize to 64x64, round to uint8.

Class labels, where a dataset has them (`ImageDataset.has_labels`), come from
`train_labels()` and `test_labels()` in the order of `train()` and `test()`:
digits' scikit-learn targets (same split), the IDX label files
`train-labels-idx1-ubyte[.gz]` / `t10k-labels-idx1-ubyte[.gz]` next to the
image files, or the TFDS `label` feature (mnist, fashion_mnist, cifar10).
They are read only when asked for; the flows never use them (see
`lcflow_tf.sample_quality`, whose feature classifier does).

`make_train_pipeline` and `make_eval_pipeline` turn such integer images into
batches of dequantized floats `x = (k + u) / num_bins`, `u ~ U[0, 1)`, where the
noise of element `i` is drawn statelessly from the seed `[seed, i]`; so a
stream is reproducible and a resumed run (`start_step`) sees the same batches.
"""

import dataclasses
import gzip
import os
import zlib
from typing import Callable

import numpy as np
import tensorflow as tf

from lcflow_tf import checks

DATASETS: tuple[str, ...] = (
    "digits",
    "fashion_mnist",
    "mnist",
    "cifar10",
    "celeb_a",
    "downsampled_imagenet/32x32",
    "downsampled_imagenet/64x64",
)

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

_IDX3_UBYTE_MAGIC = 0x00000803  # IDX: two zero bytes, type 0x08 (ubyte), 3 dims.
_IDX1_UBYTE_MAGIC = 0x00000801  # The same with 1 dimension: a label file.
_DIGITS_NUM_TRAIN = 1500
_CELEB_A_CROP = 148

# TFDS name -> (image shape, held-out split).
_TFDS_DATASETS: dict[str, tuple[tuple[int, int, int], str]] = {
    "fashion_mnist": ((28, 28, 1), "test"),
    "mnist": ((28, 28, 1), "test"),
    "cifar10": ((32, 32, 3), "test"),
    "celeb_a": ((64, 64, 3), "test"),
    "downsampled_imagenet/32x32": ((32, 32, 3), "validation"),
    "downsampled_imagenet/64x64": ((64, 64, 3), "validation"),
}


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """A dataset of integer images with a train split and a held-out split.

    Attributes:
      name: One of `DATASETS`.
      image_shape: `(H, W, C)` of every image.
      num_bins: Number of integer levels: stored values lie in `[0, num_bins)`.
      num_train: Number of training images, or None when unknown.
      num_test: Number of held-out images, or None when unknown.
      num_classes: Number of classes of the labels, or None when the dataset
        has no labels (see `has_labels`).
    """

    name: str
    image_shape: tuple[int, int, int]
    num_bins: int
    num_train: int | None
    num_test: int | None
    _make_train: Callable[[], tf.data.Dataset] = dataclasses.field(
        repr=False, compare=False)
    _make_test: Callable[[], tf.data.Dataset] = dataclasses.field(
        repr=False, compare=False)
    num_classes: int | None = None
    _make_train_labels: Callable[[], tf.data.Dataset] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    _make_test_labels: Callable[[], tf.data.Dataset] | None = dataclasses.field(
        default=None, repr=False, compare=False)
    _no_labels_reason: str = dataclasses.field(default="", repr=False, compare=False)

    def train(self) -> tf.data.Dataset:
        """Returns the training split: unbatched `uint8[H, W, C]`, fixed order."""
        return self._make_train()

    def test(self) -> tf.data.Dataset:
        """Returns the held-out split: unbatched `uint8[H, W, C]`, fixed order."""
        return self._make_test()

    @property
    def has_labels(self) -> bool:
        """Whether `train_labels()` and `test_labels()` are available."""
        return self.num_classes is not None

    def train_labels(self) -> tf.data.Dataset:
        """The class of each training image: unbatched int64 scalars, `train()`'s order.

        Raises:
          ValueError: The dataset has no labels (`has_labels` is False), or
            its label file is unreadable or does not match the images.
        """
        return self._labels(self._make_train_labels)

    def test_labels(self) -> tf.data.Dataset:
        """The class of each held-out image: unbatched int64 scalars, `test()`'s order.

        Raises:
          ValueError: As `train_labels`.
        """
        return self._labels(self._make_test_labels)

    def _labels(self, make):
        if make is None:
            raise ValueError(
                f"dataset {self.name!r} has no class labels"
                f"{': ' + self._no_labels_reason if self._no_labels_reason else ''}.")
        return make()


def load_dataset(name: str,
                 data_dir: str | None = None,
                 n_bits: int | None = None,
                 pad_to: int | None = None) -> ImageDataset:
    """Loads one of `DATASETS` as integer images.

    Args:
      name: Dataset name, one of `DATASETS`.
      data_dir: For `fashion_mnist`, a directory with the IDX image files
        (default `FASHION_MNIST_DEBIAN_DIR`); when it holds none, it is used as
        the TFDS data directory instead. For TFDS datasets, the TFDS data
        directory (None: TFDS's default). Ignored by `digits`.
      n_bits: Keep the `n_bits` most significant bits of 8-bit datasets,
        `k -> k // 2**(8 - n_bits)`, so `num_bins = 2**n_bits`. None means 8.
        Must be None for `digits`, which has 17 native levels.
      pad_to: None, or a size S >= H, W: every image is zero-padded to S x S
        (`pad_dataset`), e.g. 32 for Fashion-MNIST in a 3-level Glow.

    Returns:
      The `ImageDataset`. IDX and digits data are read here; TFDS data is
      prepared here (downloaded if needed) and streamed by `train()`/`test()`.

    Raises:
      ValueError: Unknown `name`, `n_bits` outside 1..8 (or set for `digits`),
        `pad_to` not None or an integer >= 1 or smaller than the images, a
        `data_dir` that does not exist (refused before any download),
        missing or corrupt IDX files, or a TFDS dataset that is not prepared
        and cannot be downloaded.
    """
    check_dataset(name, n_bits, pad_to)
    if data_dir is not None and name != "digits" and not os.path.isdir(data_dir):
        raise ValueError(
            f"data_dir {os.fspath(data_dir)!r} does not exist (or is not a directory); give "
            f"the directory that holds the {name} data (create it first for a TFDS download), "
            "or leave --data_dir unset for the default location.")
    dataset = _load(name, data_dir, n_bits)
    return dataset if pad_to is None else pad_dataset(dataset, pad_to)


def _load(name, data_dir, n_bits) -> ImageDataset:
    if name == "digits":
        return _load_digits()
    if n_bits is None:
        n_bits = 8
    if name == "fashion_mnist":
        paths = _find_fashion_mnist_idx(data_dir)
        if paths is not None:
            return _load_idx_dataset(name, *paths, n_bits=n_bits)
    return _load_tfds(name, data_dir, n_bits)


def pad_dataset(dataset: ImageDataset, size: int) -> ImageDataset:
    """`dataset` with every image zero-padded to `size` x `size` (value 0, centred).

    The padding of each side is `(size - H) // 2` above/left and the rest
    below/right. Labels and image counts are unchanged.

    Raises:
      ValueError: `size` is not an integer >= 1 or is smaller than the images.
    """
    checks.check_int("pad_to", size, 1)
    h, w, c = dataset.image_shape
    if size < h or size < w:
        raise ValueError(f"pad_to must be at least the image size {h}x{w} of "
                         f"{dataset.name}, got {size}.")
    top, left = (size - h) // 2, (size - w) // 2
    paddings = [[top, size - h - top], [left, size - w - left], [0, 0]]

    def pad(make):
        return lambda: make().map(lambda image: tf.pad(image, paddings))

    return dataclasses.replace(dataset, image_shape=(size, size, c),
                               _make_train=pad(dataset._make_train),
                               _make_test=pad(dataset._make_test))


def check_dataset(name: str, n_bits: int | None = None,
                  pad_to: int | None = None) -> None:
    """Checks a dataset name, `n_bits` and `pad_to` as `load_dataset` takes them, without loading.

    Raises:
      ValueError: `name` is not one of `DATASETS`; `n_bits` is not None for
        `digits` (17 native levels), or not None or an integer in 1..8;
        `pad_to` is not None or an integer >= 1.
    """
    checks.check_choice("dataset", name, DATASETS)
    if pad_to is not None:
        checks.check_int("pad_to", pad_to, 1)
    if name == "digits" and n_bits is not None:
        raise ValueError(
            f"n_bits must be unset (None) for dataset 'digits', whose images have 17 "
            f"native levels (0..16), not 8 bits; got {n_bits!r}.")
    if n_bits is not None:
        checks.check_int("n_bits", n_bits, 1, 8)


def read_idx_images(path: str) -> np.ndarray:
    """Reads an IDX3 unsigned-byte image file (plain or gzip-compressed).

    Args:
      path: Path to e.g. `train-images-idx3-ubyte` or `...-idx3-ubyte.gz`.
        Gzip is detected from the content, not the file name.

    Returns:
      `uint8[N, H, W, 1]` images.

    Raises:
      ValueError: The file is missing, not valid gzip, has the wrong magic
        number, or its size does not match the header (truncated or padded).
    """
    path = os.fspath(path)
    raw = _read_idx_bytes(path, 16, _IDX3_UBYTE_MAGIC, "3-dimensional unsigned-byte images",
                          "a label file (idx1)")
    num, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in range(4, 16, 4))
    expected = 16 + num * rows * cols
    _check_idx_size(path, raw, expected, f"{num} images of {rows}x{cols}")
    return np.frombuffer(raw, np.uint8, offset=16).reshape(num, rows, cols, 1).copy()


def read_idx_labels(path: str) -> np.ndarray:
    """Reads an IDX1 unsigned-byte label file (plain or gzip-compressed).

    Args:
      path: Path to e.g. `train-labels-idx1-ubyte` or `...-idx1-ubyte.gz`.

    Returns:
      `int64[N]` labels.

    Raises:
      ValueError: As `read_idx_images`, for a label file.
    """
    path = os.fspath(path)
    raw = _read_idx_bytes(path, 8, _IDX1_UBYTE_MAGIC, "1-dimensional unsigned-byte labels",
                          "an image file (idx3)")
    num = int.from_bytes(raw[4:8], "big")
    _check_idx_size(path, raw, 8 + num, f"{num} labels")
    return np.frombuffer(raw, np.uint8, offset=8).astype(np.int64)


def dequantize(images, num_bins: int, seed) -> tf.Tensor:
    """Uniformly dequantizes integer images: `x = (k + u) / num_bins`.

    `u ~ U[0, 1)` is drawn with `tf.random.stateless_uniform(shape, seed)` in
    float64, then combined by `dequantize_with_noise`.

    Args:
      images: Integer tensor (any shape) with values in `[0, num_bins)`.
      num_bins: Number of integer levels, >= 2.
      seed: Stateless seed, an integer tensor of shape `[2]`.

    Returns:
      float32 tensor of the same shape, in `[0, 1)`.

    Raises:
      ValueError: `num_bins` is not an integer >= 2.
    """
    _check_num_bins(num_bins)
    u = tf.random.stateless_uniform(tf.shape(images), seed, dtype=tf.float64)
    return dequantize_with_noise(images, u, num_bins)


def dequantize_with_noise(images, noise, num_bins: int) -> tf.Tensor:
    """`x = (k + u) / num_bins` for integer images `k` and given noise `u` in [0, 1).

    The result is computed in float64 and rounded to float32 so that, as real
    numbers, `k / num_bins <= x < (k + 1) / num_bins` holds exactly (a plain
    float32 computation can round `x` up to the next bin, e.g. to 1.0).

    Args:
      images: Integer tensor with values in `[0, num_bins)`.
      noise: Tensor of the same shape with values in [0, 1) (any float dtype).
      num_bins: Number of integer levels, >= 2.

    Returns:
      float32 tensor of the same shape, in `[0, 1)`.

    Raises:
      ValueError: `num_bins` is not an integer >= 2.
    """
    _check_num_bins(num_bins)
    k = tf.cast(images, tf.float64)
    x = tf.cast((k + tf.cast(noise, tf.float64)) / num_bins, tf.float32)
    # Step back into the bin where float32 rounding crossed an edge.
    scaled = tf.cast(x, tf.float64) * num_bins
    x = tf.where(scaled >= k + 1, tf.math.nextafter(x, tf.zeros_like(x)), x)
    x = tf.where(scaled < k, tf.math.nextafter(x, tf.ones_like(x)), x)
    return x


def make_train_pipeline(dataset: tf.data.Dataset,
                        batch_size: int,
                        num_bins: int,
                        seed: int,
                        shuffle_buffer: int = 10000,
                        start_step: int = 0,
                        dataset_size: int | None = None) -> tf.data.Dataset:
    """Infinite stream of shuffled, dequantized training batches.

    Epoch `e` is `dataset.shuffle(shuffle_buffer)` with its own shuffle seed
    drawn statelessly from `[seed, -1 - e]`; epochs are concatenated
    endlessly -> enumerate -> skip(start_step * batch_size) -> dequantize
    element `i` with seed `[seed, i]` -> batch(drop_remainder) -> prefetch.
    Epochs are exact (each image once per epoch, a new order each epoch), and
    every iterator over the returned dataset yields the same stream (unlike
    `reshuffle_each_iteration=True`, whose state lives in the dataset object).
    The stream is deterministic given `seed` alone: `tf.data` shuffling would mix
    in TF's global seed (`tf.random.set_seed`; and with a global seed of 0 fail on
    the per-epoch tensor seed with `OperatorNotAllowedInGraphError`), so the
    per-epoch function's graph is given no seed; any global seed yields the stream
    of none (the one every run before this change trained on; tested).

    Args:
      dataset: Unbatched integer images `[H, W, C]`, e.g. `ImageDataset.train()`.
      batch_size: Images per batch, in 1..dataset size.
      num_bins: Number of integer levels of the images.
      seed: Integer seed for shuffling and dequantization noise.
      shuffle_buffer: Shuffle buffer size, >= 1; at least the dataset size
        gives a uniform permutation per epoch.
      start_step: Number of batches to skip, so that a run resumed at step
        `start_step` sees the batches it would have seen.
      dataset_size: Number of images, for the `batch_size` check; None uses
        the dataset's cardinality when known.

    Returns:
      Infinite dataset of float32 `[batch_size, H, W, C]` in `[0, 1)`.

    Raises:
      ValueError: Non-integer-image elements, empty dataset, `batch_size`
        outside 1..dataset size, or bad `num_bins`/`seed`/`shuffle_buffer`/
        `start_step`.
    """
    size = _check_pipeline_args(dataset, batch_size, num_bins, seed, dataset_size)
    if size is not None and batch_size > size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the dataset ({size} images); "
            f"with drop_remainder no batch would be produced. Use 1..{size}.")
    checks.check_int("shuffle_buffer", shuffle_buffer, 1, numpy_ok=True)
    checks.check_int("start_step", start_step, 0, numpy_ok=True)
    ds = _shuffled_epochs(dataset, shuffle_buffer, seed).enumerate()
    if start_step:
        ds = ds.skip(start_step * batch_size)
    ds = ds.map(_dequantize_fn(num_bins, seed), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _shuffled_epochs(dataset, shuffle_buffer, seed):
    """Endless epochs; epoch `e` shuffled with a seed drawn statelessly from [seed, -1 - e]."""

    def epoch(e):
        # tf.data mixes TensorFlow's global seed into a shuffle's seed (and, with a global seed
        # of 0, compares our tensor seed in Python: an error). Without a seed in this function's
        # graph the stream depends on `seed` only, whatever the caller's tf.random.set_seed.
        tf.compat.v1.get_default_graph().seed = None
        epoch_seed = tf.random.stateless_uniform(
            [], tf.stack([tf.constant(seed, tf.int64), -1 - e]), minval=0,
            maxval=2**31 - 1, dtype=tf.int64)
        return dataset.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)

    return tf.data.Dataset.counter().flat_map(epoch)


def make_eval_pipeline(dataset: tf.data.Dataset, batch_size: int, num_bins: int,
                       seed: int) -> tf.data.Dataset:
    """Finite, ordered stream of dequantized evaluation batches.

    enumerate -> dequantize element `i` with seed `[seed, i]` -> batch (the
    last batch may be partial) -> prefetch. Every image appears exactly once.

    Args:
      dataset: Unbatched integer images `[H, W, C]`, e.g. `ImageDataset.test()`.
      batch_size: Images per batch, >= 1 (may exceed the dataset size).
      num_bins: Number of integer levels of the images.
      seed: Integer seed for the dequantization noise.

    Returns:
      Dataset of float32 `[<=batch_size, H, W, C]` in `[0, 1)`.

    Raises:
      ValueError: Non-integer-image elements, empty dataset, `batch_size` < 1,
        or bad `num_bins`/`seed`.
    """
    _check_pipeline_args(dataset, batch_size, num_bins, seed, None)
    ds = dataset.enumerate().map(_dequantize_fn(num_bins, seed),
                                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------- internals


def _read_idx_bytes(path: str, header_bytes: int, magic: int, content: str,
                    other_kind: str) -> bytes:
    """The (decompressed) content of an IDX file of `magic`, at least `header_bytes` long."""
    if not os.path.isfile(path):
        raise ValueError(
            f"IDX file {path!r} does not exist. For Fashion-MNIST install it with "
            "`apt-get install dataset-fashion-mnist` (files land in "
            f"{FASHION_MNIST_DEBIAN_DIR}) or pass --data_dir pointing at a "
            "directory with the IDX files.")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"IDX file {path!r} is not a valid gzip stream "
                f"(truncated or corrupted download?): {e}") from None
    elif path.endswith(".gz"):
        raise ValueError(
            f"IDX file {path!r} ends in .gz but is not gzip data (the first bytes "
            f"are {raw[:4]!r}, gzip starts with b'\\x1f\\x8b').")
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found is not None and found != magic:
        raise ValueError(
            f"IDX file {path!r} has magic number 0x{found:08x}; expected "
            f"0x{magic:08x} ({content}). Is it {other_kind} or not an IDX file at all?")
    if len(raw) < header_bytes:
        raise ValueError(
            f"IDX file {path!r} is truncated: {len(raw)} bytes, shorter than the "
            f"{header_bytes}-byte header.")
    return raw


def _check_idx_size(path: str, raw: bytes, expected: int, declared: str) -> None:
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise ValueError(
            f"IDX file {path!r} is {problem}: the header declares {declared} "
            f"({expected} bytes in all), but it has {len(raw)} bytes.")


def _load_digits() -> ImageDataset:
    from sklearn.datasets import load_digits  # Deferred: only digits needs sklearn.

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1]
    labels = digits.target.astype(np.int64)
    order = np.random.RandomState(0).permutation(len(images))
    train, test = order[:_DIGITS_NUM_TRAIN], order[_DIGITS_NUM_TRAIN:]
    return ImageDataset("digits", (8, 8, 1), 17, len(train), len(test),
                        _from_array(images[train]), _from_array(images[test]),
                        num_classes=10, _make_train_labels=_from_array(labels[train]),
                        _make_test_labels=_from_array(labels[test]))


def _find_fashion_mnist_idx(data_dir) -> tuple[str, str] | None:
    """Returns (train, test) IDX paths in the directory, or None if neither is there."""
    directory = os.fspath(data_dir) if data_dir is not None else FASHION_MNIST_DEBIAN_DIR
    found = {}
    for split in ("train", "t10k"):
        for suffix in (".gz", ""):
            path = os.path.join(directory, f"{split}-images-idx3-ubyte{suffix}")
            if os.path.isfile(path):
                found[split] = path
                break
    if not found:
        return None
    if len(found) == 1:
        missing = "t10k" if "train" in found else "train"
        raise ValueError(
            f"Found {list(found.values())[0]!r} but no {missing}-images-idx3-ubyte[.gz] "
            f"in {directory!r}; both IDX image files are needed. Reinstall with "
            "`apt-get install --reinstall dataset-fashion-mnist` or pass --data_dir "
            "pointing at a directory with both.")
    return found["train"], found["t10k"]


def _load_idx_dataset(name, train_path, test_path, n_bits) -> ImageDataset:
    train, test = read_idx_images(train_path), read_idx_images(test_path)
    for path, images in ((train_path, train), (test_path, test)):
        if images.shape[1:] != (28, 28, 1):
            raise ValueError(f"IDX file {path!r} holds {images.shape[1]}x{images.shape[2]} "
                             f"images; {name} needs 28x28.")
    shift = 8 - n_bits
    directory = os.path.dirname(train_path)
    label_paths = [_find_file(directory, f"{split}-labels-idx1-ubyte") for split in
                   ("train", "t10k")]
    labels = {}
    if None in label_paths:
        labels["_no_labels_reason"] = (
            f"{directory!r} lacks train-labels-idx1-ubyte[.gz] and/or "
            "t10k-labels-idx1-ubyte[.gz] next to the image files")
    else:
        labels = dict(num_classes=10,
                      _make_train_labels=_idx_labels(label_paths[0], len(train)),
                      _make_test_labels=_idx_labels(label_paths[1], len(test)))
    return ImageDataset(name, (28, 28, 1), 2**n_bits, len(train), len(test),
                        _from_array(train >> shift), _from_array(test >> shift), **labels)


def _find_file(directory, name) -> str | None:
    """directory/name.gz or directory/name, whichever exists first, else None."""
    for suffix in (".gz", ""):
        path = os.path.join(directory, name + suffix)
        if os.path.isfile(path):
            return path
    return None


def _idx_labels(path, num_images) -> Callable[[], tf.data.Dataset]:
    """Reads the label file when called; checks it has one label per image, in 0..9."""

    def make():
        labels = read_idx_labels(path)
        if len(labels) != num_images:
            raise ValueError(f"IDX label file {path!r} holds {len(labels)} labels for "
                             f"{num_images} images; they must match one to one.")
        if labels.size and labels.max() > 9:
            raise ValueError(f"IDX label file {path!r} holds label {labels.max()}; "
                             "expected classes 0..9.")
        return tf.data.Dataset.from_tensor_slices(labels)

    return make


def _from_array(images: np.ndarray) -> Callable[[], tf.data.Dataset]:
    return lambda: tf.data.Dataset.from_tensor_slices(images)


def _load_tfds(name, data_dir, n_bits) -> ImageDataset:
    import tensorflow_datasets as tfds  # Deferred: heavy, and only these datasets need it.

    image_shape, test_split = _TFDS_DATASETS[name]
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises many types (network, import, file errors).
        hint = ""
        if name == "fashion_mnist":
            hint = (f" No IDX files were found in "
                    f"{os.fspath(data_dir) if data_dir is not None else FASHION_MNIST_DEBIAN_DIR!r}"
                    "; offline, `apt-get install dataset-fashion-mnist` or pass --data_dir "
                    "pointing at train-/t10k-images-idx3-ubyte[.gz].")
        raise ValueError(
            f"TFDS dataset {name!r} is not available in data_dir={data_dir!r} and could "
            f"not be downloaded/prepared ({type(e).__name__}: {e}). It must be prepared "
            f"once with internet access, e.g. `tfds build {name} --data_dir=DIR`, then "
            f"passed with --data_dir=DIR.{hint}") from e

    shift = 8 - n_bits

    def to_image(example):
        image = example["image"]
        if name == "celeb_a":
            image = _celeb_a_crop_resize(image)
        image = tf.ensure_shape(image, image_shape)
        return tf.bitwise.right_shift(image, tf.constant(shift, tf.uint8)) if shift else image

    def make(split):
        return lambda: builder.as_dataset(split=split, shuffle_files=False).map(
            to_image, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def count(split):
        try:
            return builder.info.splits[split].num_examples
        except KeyError:  # E.g. under tfds.testing.mock_data.
            return None

    def make_labels(split):
        return lambda: builder.as_dataset(split=split, shuffle_files=False).map(
            lambda example: tf.cast(example["label"], tf.int64),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    features = builder.info.features
    label_feature = features["label"] if "label" in features else None
    if isinstance(label_feature, tfds.features.ClassLabel):
        labels = dict(num_classes=int(label_feature.num_classes),
                      _make_train_labels=make_labels("train"),
                      _make_test_labels=make_labels(test_split))
    else:
        labels = dict(_no_labels_reason="the TFDS dataset has no 'label' class feature")
    return ImageDataset(name, image_shape, 2**n_bits, count("train"), count(test_split),
                        make("train"), make(test_split), **labels)


def _celeb_a_crop_resize(image: tf.Tensor) -> tf.Tensor:
    """Centre-crops 148x148 and area-resizes to 64x64 (RealNVP, arXiv:1605.08803)."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    image = tf.image.crop_to_bounding_box(image, (height - _CELEB_A_CROP) // 2,
                                          (width - _CELEB_A_CROP) // 2, _CELEB_A_CROP,
                                          _CELEB_A_CROP)
    image = tf.image.resize(image, (64, 64), method=tf.image.ResizeMethod.AREA)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def _dequantize_fn(num_bins: int, seed: int):
    def fn(index, image):
        return dequantize(image, num_bins, tf.stack([tf.constant(seed, tf.int64), index]))

    return fn


def _check_num_bins(num_bins) -> None:
    checks.check_int("num_bins", num_bins, 2, numpy_ok=True)


def _check_pipeline_args(dataset, batch_size, num_bins, seed, dataset_size) -> int | None:
    """Validates common pipeline arguments; returns the dataset size if known."""
    spec = dataset.element_spec
    if not isinstance(spec, tf.TensorSpec) or not spec.dtype.is_integer:
        raise ValueError(
            f"dataset elements must be integer image tensors [H, W, C]; got {spec}. "
            "Pass ImageDataset.train()/test(), not raw TFDS example dicts.")
    checks.check_int("batch_size", batch_size, 1, numpy_ok=True)
    _check_num_bins(num_bins)
    checks.check_int("seed", seed, numpy_ok=True)
    if dataset_size is None:
        cardinality = int(dataset.cardinality())
        dataset_size = cardinality if cardinality >= 0 else None
    else:
        checks.check_int("dataset_size", dataset_size, 0, numpy_ok=True)
    # Unknown size: read one element, or an empty dataset would repeat forever.
    if dataset_size == 0 or (dataset_size is None and
                             next(iter(dataset.take(1)), None) is None):
        raise ValueError("dataset is empty (0 images); nothing to batch.")
    return dataset_size
