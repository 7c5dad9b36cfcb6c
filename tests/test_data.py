"""Tests for lcflow_tf.data: dataset loading, the IDX reader, dequantization, pipelines."""

import gzip
import os
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lcflow_tf import data

_DEBIAN_TRAIN = os.path.join(data.FASHION_MNIST_DEBIAN_DIR, "train-images-idx3-ubyte.gz")
_DEBIAN_TEST = os.path.join(data.FASHION_MNIST_DEBIAN_DIR, "t10k-images-idx3-ubyte.gz")
needs_debian_fashion_mnist = pytest.mark.skipif(
    not (os.path.isfile(_DEBIAN_TRAIN) and os.path.isfile(_DEBIAN_TEST)),
    reason="Debian dataset-fashion-mnist is not installed")


def _idx_bytes(images: np.ndarray, magic: int = 0x00000803) -> bytes:
    n, h, w = images.shape
    header = b"".join(v.to_bytes(4, "big") for v in (magic, n, h, w))
    return header + images.astype(np.uint8).tobytes()


def _to_numpy(ds: tf.data.Dataset) -> np.ndarray:
    return np.stack([x.numpy() for x in ds])


def _index_images(n: int, num_bins: int) -> tf.data.Dataset:
    """n images [2, 2, 1] whose every pixel is its index (mod num_bins)."""
    values = (np.arange(n) % num_bins).astype(np.uint8)
    return tf.data.Dataset.from_tensor_slices(np.broadcast_to(values[:, None, None, None],
                                                              (n, 2, 2, 1)).copy())


def _bins(x, num_bins: int) -> np.ndarray:
    """The integer level of dequantized values, computed exactly (float64)."""
    return np.floor(np.asarray(x, np.float64) * num_bins).astype(np.int64)


# ---------------------------------------------------------------- digits


def test_digits_shapes_range_and_split():
    ds = data.load_dataset("digits")
    assert ds.image_shape == (8, 8, 1)
    assert ds.num_bins == 17
    assert (ds.num_train, ds.num_test) == (1500, 297)
    train, test = _to_numpy(ds.train()), _to_numpy(ds.test())
    assert train.shape == (1500, 8, 8, 1) and test.shape == (297, 8, 8, 1)
    assert train.dtype == np.uint8 and test.dtype == np.uint8
    assert train.min() == 0 and train.max() == 16 and test.max() <= 16

    from sklearn.datasets import load_digits
    all_images = load_digits().images.astype(np.uint8).reshape(1797, -1)
    order = np.random.RandomState(0).permutation(1797)
    np.testing.assert_array_equal(train.reshape(1500, -1), all_images[order[:1500]])
    np.testing.assert_array_equal(test.reshape(297, -1), all_images[order[1500:]])
    assert set(order[:1500]).isdisjoint(order[1500:])
    # Deterministic across loads.
    np.testing.assert_array_equal(_to_numpy(data.load_dataset("digits").test()), test)


def test_pad_to_zero_pads_every_image_centred():
    ds = data.load_dataset("digits")
    padded = data.load_dataset("digits", pad_to=13)
    assert padded.image_shape == (13, 13, 1)
    assert (padded.num_train, padded.num_test, padded.num_bins) == (1500, 297, 17)
    assert padded.has_labels
    for split in ("train", "test"):
        original = _to_numpy(getattr(ds, split)())
        got = _to_numpy(getattr(padded, split)())
        assert got.shape == original.shape[:1] + (13, 13, 1) and got.dtype == np.uint8
        # (13 - 8) // 2 = 2 rows/columns above/left, 3 below/right, all zero
        np.testing.assert_array_equal(got[:, 2:10, 2:10], original)
        border = np.ones((13, 13), bool)
        border[2:10, 2:10] = False
        assert not got[:, border].any()
    np.testing.assert_array_equal(_to_numpy(padded.train_labels()), _to_numpy(ds.train_labels()))
    same = data.load_dataset("digits", pad_to=8)
    np.testing.assert_array_equal(_to_numpy(same.test()), _to_numpy(ds.test()))


@pytest.mark.parametrize("pad_to,message", [
    (7, r"pad_to must be at least the image size 8x8 of digits, got 7\."),
    (0, r"pad_to must be an integer >= 1, got 0\."),
    (32.0, r"pad_to must be an integer >= 1, got 32\.0\.")])
def test_bad_pad_to(pad_to, message):
    with pytest.raises(ValueError, match=message):
        data.load_dataset("digits", pad_to=pad_to)


def test_digits_labels_follow_the_split():
    ds = data.load_dataset("digits")
    assert ds.has_labels and ds.num_classes == 10
    train, test = _to_numpy(ds.train_labels()), _to_numpy(ds.test_labels())
    assert train.dtype == np.int64 and train.shape == (1500,) and test.shape == (297,)

    from sklearn.datasets import load_digits
    digits = load_digits()
    order = np.random.RandomState(0).permutation(1797)
    np.testing.assert_array_equal(train, digits.target[order[:1500]])
    np.testing.assert_array_equal(test, digits.target[order[1500:]])
    # Each label belongs to the image at the same position.
    images = digits.images.astype(np.uint8)[..., None]
    np.testing.assert_array_equal(_to_numpy(ds.test())[test == 3], images[order[1500:]][test == 3])


def test_digits_rejects_n_bits():
    with pytest.raises(ValueError, match=r"n_bits must be unset \(None\) for dataset 'digits', "
                                         r"whose images have 17 native levels.*got 5"):
        data.load_dataset("digits", n_bits=5)


# ---------------------------------------------------------------- argument checks


def test_unknown_dataset_lists_allowed():
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits'.*"
                                         r"'downsampled_imagenet/64x64'\], got 'svhn'"):
        data.load_dataset("svhn")


@pytest.mark.parametrize("n_bits", [0, 9, -1, 2.5, True])
def test_bad_n_bits(n_bits):
    with pytest.raises(ValueError, match=rf"n_bits must be an integer in 1\.\.8, got {n_bits!r}"):
        data.load_dataset("mnist", n_bits=n_bits)


@pytest.mark.parametrize("make", [data.make_train_pipeline, data.make_eval_pipeline])
@pytest.mark.parametrize("batch_size", [0, -3, 1.5])
def test_bad_batch_size(make, batch_size):
    message = rf"batch_size must be an integer >= 1, got {batch_size!r}"
    with pytest.raises(ValueError, match=message):
        make(_index_images(10, 17), batch_size, num_bins=17, seed=0)


def test_train_batch_larger_than_dataset():
    with pytest.raises(ValueError, match=r"batch_size=11 .*10 images.*1\.\.10"):
        data.make_train_pipeline(_index_images(10, 17), 11, num_bins=17, seed=0)
    # The explicit size wins where the cardinality is unknown.
    unknown = _index_images(10, 17).filter(lambda x: True)
    with pytest.raises(ValueError, match=r"batch_size=11 .*10 images"):
        data.make_train_pipeline(unknown, 11, num_bins=17, seed=0, dataset_size=10)
    # Eval allows a single partial batch.
    batches = list(data.make_eval_pipeline(_index_images(10, 17), 11, num_bins=17, seed=0))
    assert [b.shape[0] for b in batches] == [10]


@pytest.mark.parametrize("make", [data.make_train_pipeline, data.make_eval_pipeline])
def test_empty_dataset(make):
    with pytest.raises(ValueError, match="empty"):
        make(_index_images(10, 17).take(0), 2, num_bins=17, seed=0)
    # Unknown cardinality: must raise, not repeat an empty epoch forever.
    with pytest.raises(ValueError, match="empty"):
        make(_index_images(10, 17).filter(lambda x: False), 2, num_bins=17, seed=0)


def test_pipeline_rejects_bad_elements_and_num_bins():
    floats = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="integer image tensors"):
        data.make_eval_pipeline(floats, 2, num_bins=17, seed=0)
    with pytest.raises(ValueError, match=r"num_bins must be an integer >= 2, got 1"):
        data.make_eval_pipeline(_index_images(4, 17), 2, num_bins=1, seed=0)
    with pytest.raises(ValueError, match=r"start_step must be an integer >= 0, got -1"):
        data.make_train_pipeline(_index_images(4, 17), 2, num_bins=17, seed=0, start_step=-1)


@pytest.mark.parametrize("global_seed", [0, 1, 12345])
def test_train_stream_ignores_tensorflow_global_seed(global_seed):
    """The stream depends on `seed` only: a caller's tf.random.set_seed (0 used to raise
    OperatorNotAllowedInGraphError inside tf.data) gives the batches of no global seed."""

    def first_batches():
        it = iter(data.make_train_pipeline(_index_images(10, 17), 4, num_bins=17, seed=3))
        return np.concatenate([next(it).numpy() for _ in range(8)])  # 3+ epochs

    tf.random.set_seed(None)
    expected = first_batches()
    try:
        tf.random.set_seed(global_seed)
        np.testing.assert_array_equal(first_batches(), expected)
    finally:
        tf.random.set_seed(None)


# ---------------------------------------------------------------- IDX reader


def test_idx_roundtrip_plain_and_gzip(tmp_path):
    images = np.random.RandomState(1).randint(0, 256, (5, 3, 4)).astype(np.uint8)
    plain, packed = tmp_path / "a-idx3-ubyte", tmp_path / "a-idx3-ubyte.gz"
    plain.write_bytes(_idx_bytes(images))
    packed.write_bytes(gzip.compress(_idx_bytes(images)))
    for path in (plain, packed):
        out = data.read_idx_images(str(path))
        assert out.shape == (5, 3, 4, 1) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 0], images)


def test_idx_missing_file(tmp_path):
    path = str(tmp_path / "nope-idx3-ubyte.gz")
    with pytest.raises(ValueError, match=rf"{re.escape(path)}.*does not exist.*apt-get install "
                       r"dataset-fashion-mnist.*--data_dir"):
        data.read_idx_images(path)


def test_idx_truncated(tmp_path):
    path = tmp_path / "t-idx3-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((4, 3, 3)))[:-5])
    with pytest.raises(ValueError, match=r"t-idx3-ubyte.*truncated.*4 images of 3x3.*52 bytes"
                       r".*47 bytes"):
        data.read_idx_images(str(path))
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match=r"truncated: 3 bytes.*16-byte"):
        data.read_idx_images(str(path))


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "t-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros((40, 3, 3))))[:-12])
    with pytest.raises(ValueError, match=r"t-idx3-ubyte\.gz.*not a valid gzip"):
        data.read_idx_images(str(path))


def test_idx_garbage_gzip(tmp_path):
    path = tmp_path / "g-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(ValueError, match=r"g-idx3-ubyte\.gz.*not a valid gzip"):
        data.read_idx_images(str(path))
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(ValueError, match=r"ends in \.gz but is not gzip"):
        data.read_idx_images(str(path))


def test_idx_wrong_magic(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.zeros((2, 2, 2)), magic=0x00000801))
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte.*magic number 0x00000801.*"
                       r"expected 0x00000803"):
        data.read_idx_images(str(path))


def test_fashion_mnist_from_idx_dir(tmp_path):
    rng = np.random.RandomState(2)
    train, test = (rng.randint(0, 256, (n, 28, 28)).astype(np.uint8) for n in (7, 3))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(train))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(test)))
    ds = data.load_dataset("fashion_mnist", data_dir=str(tmp_path), n_bits=3)
    assert (ds.num_train, ds.num_test, ds.num_bins, ds.image_shape) == (7, 3, 8, (28, 28, 1))
    np.testing.assert_array_equal(_to_numpy(ds.train())[..., 0], train // 32)
    np.testing.assert_array_equal(_to_numpy(ds.test())[..., 0], test // 32)


def _idx1_bytes(labels: np.ndarray) -> bytes:
    header = b"".join(v.to_bytes(4, "big") for v in (0x00000801, len(labels)))
    return header + np.asarray(labels, np.uint8).tobytes()


def test_fashion_mnist_idx_labels(tmp_path):
    train, test = np.zeros((7, 28, 28), np.uint8), np.ones((3, 28, 28), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(train))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(test))
    ds = data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert not ds.has_labels and ds.num_classes is None  # no label files: images still load
    with pytest.raises(ValueError, match=r"dataset 'fashion_mnist' has no class labels: .* "
                       r"lacks train-labels-idx1-ubyte\[.gz\]"):
        ds.train_labels()

    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx1_bytes([0, 1, 2, 3, 4, 9, 5])))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx1_bytes([7, 8]))  # one missing
    ds = data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
    assert ds.has_labels and ds.num_classes == 10
    np.testing.assert_array_equal(_to_numpy(ds.train_labels()), [0, 1, 2, 3, 4, 9, 5])
    with pytest.raises(ValueError, match=r"holds 2 labels for 3 images"):
        ds.test_labels()
    with pytest.raises(ValueError, match=r"magic number 0x00000801; expected 0x00000803"):
        data.read_idx_images(str(tmp_path / "t10k-labels-idx1-ubyte"))
    with pytest.raises(ValueError, match=r"magic number 0x00000803; expected 0x00000801.*image"):
        data.read_idx_labels(str(tmp_path / "t10k-images-idx3-ubyte"))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx1_bytes([7, 8, 5])[:-1])
    with pytest.raises(ValueError, match=r"is truncated: the header declares 3 labels \(11 bytes"):
        data.read_idx_labels(str(tmp_path / "t10k-labels-idx1-ubyte"))


def test_fashion_mnist_partial_idx_dir(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 28, 28))))
    with pytest.raises(ValueError, match=r"no t10k-images-idx3-ubyte\[\.gz\].*both"):
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_fashion_mnist_wrong_image_size(tmp_path):
    for split in ("train", "t10k"):
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((2, 8, 8))))
    with pytest.raises(ValueError, match=r"8x8 images; fashion_mnist needs 28x28"):
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path))


@pytest.fixture(scope="module")
def debian_fashion_mnist():
    return data.read_idx_images(_DEBIAN_TRAIN), data.read_idx_images(_DEBIAN_TEST)


@needs_debian_fashion_mnist
def test_read_debian_fashion_mnist(debian_fashion_mnist):
    train, test = debian_fashion_mnist
    assert train.shape == (60000, 28, 28, 1) and test.shape == (10000, 28, 28, 1)
    assert train.dtype == np.uint8 and train.max() == 255 and train.min() == 0
    assert 60 < train.mean() < 80  # Fashion-MNIST's mean pixel is about 72.9.


@needs_debian_fashion_mnist
def test_load_debian_fashion_mnist(debian_fashion_mnist):
    train, test = debian_fashion_mnist
    ds = data.load_dataset("fashion_mnist")
    assert (ds.num_train, ds.num_test, ds.num_bins) == (60000, 10000, 256)
    first = _to_numpy(ds.test().take(5))
    np.testing.assert_array_equal(first, test[:5])

    labels = _to_numpy(ds.test_labels().batch(10000))[0]
    assert labels.shape == (10000,) and np.all(np.bincount(labels) == 1000)  # balanced

    ds5 = data.load_dataset("fashion_mnist", n_bits=5)
    assert ds5.num_bins == 32
    got = _to_numpy(ds5.train().take(200))
    assert got.dtype == np.uint8 and got.max() == 31
    np.testing.assert_array_equal(got, train[:200] // 8)


# ---------------------------------------------------------------- TFDS (mocked)


@pytest.mark.parametrize("name,shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3)),
                                        ("celeb_a", (64, 64, 3))])
@pytest.mark.parametrize("n_bits", [None, 5])
def test_tfds_mocked(name, shape, n_bits, tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        ds = data.load_dataset(name, data_dir=str(tmp_path), n_bits=n_bits)
        assert ds.image_shape == shape
        num_bins = 256 if n_bits is None else 32
        assert ds.num_bins == num_bins
        for split in (ds.train(), ds.test()):
            assert split.element_spec == tf.TensorSpec(shape, tf.uint8)
            images = _to_numpy(split)
            assert images.shape == (4,) + shape and images.dtype == np.uint8
            assert images.max() < num_bins
            assert images.max() > num_bins // 2  # Mock pixels are uniform, not all zeros.
        if name == "celeb_a":
            assert not ds.has_labels
            with pytest.raises(ValueError, match=r"'celeb_a' has no class labels: the TFDS "
                               r"dataset has no 'label' class feature"):
                ds.test_labels()
        else:
            assert ds.num_classes == 10
            labels = _to_numpy(ds.train_labels())
            assert labels.shape == (4,) and labels.dtype == np.int64 and labels.max() < 10


@pytest.mark.parametrize("name,size", [("downsampled_imagenet/32x32", 32),
                                       ("downsampled_imagenet/64x64", 64)])
def test_tfds_mocked_imagenet_uses_validation(name, size):
    seen_splits = []

    def as_dataset_fn(builder, split, **kwargs):
        seen_splits.append(split)
        images = np.full((3, size, size, 3), 200, np.uint8)
        return tf.data.Dataset.from_tensor_slices({"image": images})

    with tfds.testing.mock_data(as_dataset_fn=as_dataset_fn):
        ds = data.load_dataset(name, n_bits=4)
        images = _to_numpy(ds.test())
    assert seen_splits == ["validation"]
    assert images.shape == (3, size, size, 3) and (images == 200 // 16).all()


def test_fashion_mnist_falls_back_to_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        ds = data.load_dataset("fashion_mnist", data_dir=str(tmp_path))
        assert _to_numpy(ds.train()).shape == (3, 28, 28, 1)


def test_tfds_unavailable_is_value_error(tmp_path, monkeypatch):
    def offline(self, *args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    data_dir = re.escape(str(tmp_path))
    with pytest.raises(ValueError, match=rf"'cifar10'.*data_dir='{data_dir}'.*no network"
                       r".*tfds build cifar10"):
        data.load_dataset("cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"'fashion_mnist'.*No IDX files.*apt-get install "
                       r"dataset-fashion-mnist"):
        data.load_dataset("fashion_mnist", data_dir=str(tmp_path))


# ---------------------------------------------------------------- dequantization


@pytest.mark.parametrize("num_bins", [2, 17, 32, 256])
def test_dequantize_range_and_bins(num_bins):
    k = tf.random.stateless_uniform([200_000], [1, 2], 0, num_bins, dtype=tf.int32)
    x = data.dequantize(tf.cast(k, tf.uint8), num_bins, [3, 4])
    assert x.dtype == tf.float32 and x.shape == k.shape
    x = x.numpy()
    assert x.min() >= 0.0 and x.max() < 1.0
    np.testing.assert_array_equal(_bins(x, num_bins), k.numpy())
    # Noise is roughly uniform within each bin.
    u = x.astype(np.float64) * num_bins - k.numpy()
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.01


def test_dequantize_top_bin_never_rounds_to_one():
    # In plain float32, (255 + u) / 256 rounds to 1.0 for u > 1 - 2**-17: ~8 of 1e6 draws.
    k = tf.fill([1_000_000], tf.constant(255, tf.uint8))
    x = data.dequantize(k, 256, [3, 4]).numpy()
    assert x.max() < 1.0
    assert (_bins(x, 256) == 255).all()


def test_dequantize_is_stateless():
    k = tf.zeros([5, 4], tf.uint8)
    a, b = data.dequantize(k, 17, [1, 2]), data.dequantize(k, 17, [1, 2])
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, data.dequantize(k, 17, [1, 3]))


# ---------------------------------------------------------------- pipelines


def _take(ds: tf.data.Dataset, n: int) -> np.ndarray:
    return np.stack([b.numpy() for b in ds.take(n)])


def test_train_pipeline_shapes_and_determinism():
    source = _index_images(48, 64)
    make = lambda seed: data.make_train_pipeline(source, 8, 64, seed, shuffle_buffer=100)
    a, b, c = _take(make(7), 5), _take(make(7), 5), _take(make(8), 5)
    assert a.shape == (5, 8, 2, 2, 1) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() < 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(_bins(a, 64), _bins(c, 64))  # Different order.
    # A second iterator over the same pipeline object replays the same stream.
    pipeline = make(7)
    np.testing.assert_array_equal(_take(pipeline, 5), a)
    np.testing.assert_array_equal(_take(pipeline, 5), a)


def test_train_pipeline_epochs_are_permutations():
    source = _index_images(48, 64)
    batches = _take(data.make_train_pipeline(source, 8, 64, seed=3, shuffle_buffer=48), 12)
    idx = _bins(batches[:, :, 0, 0, 0], 64).reshape(2, 48)  # Two epochs of 6 batches.
    for epoch in idx:
        assert sorted(epoch) == list(range(48))
    assert not np.array_equal(idx[0], idx[1])  # Reshuffled each epoch.
    assert not np.array_equal(idx[0], np.arange(48))  # Actually shuffled.
    # All four pixels of an image share the level but get independent noise.
    assert (_bins(batches, 64) == _bins(batches[..., :1, :1, :], 64)).all()
    assert len(np.unique(batches)) == batches.size


def test_train_pipeline_start_step_resumes_stream():
    source = _index_images(30, 64)
    fresh = data.make_train_pipeline(source, 4, 64, seed=5, shuffle_buffer=30)
    for start in (3, 17):  # 17 * 4 = 68: resumes in the third epoch.
        resumed = data.make_train_pipeline(source, 4, 64, seed=5, shuffle_buffer=30,
                                           start_step=start)
        np.testing.assert_array_equal(_take(resumed, 4), _take(fresh.skip(start), 4))


def test_train_pipeline_noise_keyed_on_global_index():
    source = _index_images(6, 64)
    batches = _take(data.make_train_pipeline(source, 3, 64, seed=9, shuffle_buffer=1), 4)
    flat = batches.reshape(12, 2, 2, 1)
    for i, x in enumerate(flat):  # shuffle_buffer=1 keeps the order: element i is image i % 6.
        expected = data.dequantize(tf.fill([2, 2, 1], tf.constant(i % 6, tf.uint8)), 64,
                                   tf.constant([9, i], tf.int64))
        np.testing.assert_array_equal(x, expected)


def test_eval_pipeline_covers_each_element_once():
    source = _index_images(23, 64)
    batches = list(data.make_eval_pipeline(source, 5, 64, seed=4))
    assert [b.shape[0] for b in batches] == [5, 5, 5, 5, 3]
    x = np.concatenate([b.numpy() for b in batches])
    np.testing.assert_array_equal(_bins(x[:, 0, 0, 0], 64), np.arange(23))  # In order.
    assert x.min() >= 0 and x.max() < 1
    for i in (0, 22):
        expected = data.dequantize(tf.fill([2, 2, 1], tf.constant(i, tf.uint8)), 64,
                                   tf.constant([4, i], tf.int64))
        np.testing.assert_array_equal(x[i], expected)
    again = np.concatenate([b.numpy() for b in data.make_eval_pipeline(source, 5, 64, seed=4)])
    np.testing.assert_array_equal(x, again)
    other = np.concatenate([b.numpy() for b in data.make_eval_pipeline(source, 5, 64, seed=5)])
    assert not np.array_equal(x, other)
