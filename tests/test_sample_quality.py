"""lcflow_tf.sample_quality (classifier, metric, images): the cached feature classifier, its
distances, and samples."""

import dataclasses
import json
import os
import shutil

import numpy as np
import pytest

from lcflow_tf import data
from lcflow_tf import sample_quality
from lcflow_tf.sample_quality import classifier as classifier_lib


TINY = sample_quality.ClassifierConfig(steps=100, batch_size=64, learning_rate=3e-3,
                                       feature_dim=32)


@pytest.fixture(scope="module")
def arrays(digits):
  return sample_quality.load_arrays(digits)


@pytest.fixture(scope="module")
def cache(digits, arrays, tmp_path_factory):
  """A tiny digits classifier trained once into a module cache directory."""
  directory = str(tmp_path_factory.mktemp("classifiers") / "digits")
  return sample_quality.load_or_train(digits, directory, TINY, arrays=arrays)


# --- the classifier and its cache --------------------------------------------------------------
def test_classifier_learns_and_is_cached(cache, digits, arrays, monkeypatch):
  info = cache.info
  assert 0.5 < cache.test_accuracy <= 1.0  # 10 classes: chance is 0.1
  assert info["dataset"] == "digits" and info["image_shape"] == [8, 8, 1]
  assert info["num_bins"] == 17 and info["num_classes"] == 10
  assert info["config"] == dataclasses.asdict(TINY)
  assert info["num_train"] == 1500 and info["num_test"] == 297
  refs = info["reference_distances"]
  assert 0 < refs["train_vs_test"] < refs["test_half_vs_half"]  # more images, less noise
  with open(os.path.join(cache.directory, sample_quality.INFO_FILE)) as f:
    assert json.load(f) == info
  assert sorted(os.listdir(cache.directory)) == sorted([sample_quality.INFO_FILE,
                                                        info["weights_file"]])

  def no_training(*args, **kwargs):
    raise AssertionError("the cached classifier was retrained")

  monkeypatch.setattr(classifier_lib, "_train", no_training)
  again = sample_quality.load_or_train(digits, cache.directory, TINY)
  assert again.info == info
  np.testing.assert_array_equal(again.features(arrays.test_images[:50]),
                                cache.features(arrays.test_images[:50]))


def test_cache_of_other_data_or_settings_is_refused(cache, digits, arrays, tmp_path):
  directory = str(tmp_path / "cls")
  shutil.copytree(cache.directory, directory)
  old_weights = cache.info["weights_file"]
  with pytest.raises(ValueError, match=r"classifier_dir .*/cls holds a classifier of other data "
                     r"or settings \(classifier steps=100 there but 3 now\); pass another "
                     r"classifier_dir"):
    sample_quality.load_or_train(digits, directory, dataclasses.replace(TINY, steps=3),
                                 arrays=arrays)
  # Other data under the same name: the first 1000 training images only.
  fewer = data.ImageDataset(
      "digits", (8, 8, 1), 17, 1000, 297, lambda: digits.train().take(1000), digits.test,
      num_classes=10, _make_train_labels=lambda: digits.train_labels().take(1000),
      _make_test_labels=digits.test_labels)
  with pytest.raises(ValueError, match=r"num_train=1500 there but 1000 now; data_sha1="):
    sample_quality.load_or_train(fewer, directory, TINY)
  # retrain=True replaces the cache (and its weights file).
  replaced = sample_quality.load_or_train(fewer, directory, dataclasses.replace(TINY, steps=3),
                                          retrain=True)
  assert replaced.info["num_train"] == 1000
  assert sorted(os.listdir(directory)) == sorted([sample_quality.INFO_FILE,
                                                  replaced.info["weights_file"]])
  assert old_weights not in os.listdir(directory)
  with open(os.path.join(directory, sample_quality.INFO_FILE), "w") as f:
    f.write("{not json")
  with pytest.raises(ValueError, match=r"classifier.json is not a readable classifier cache "
                     r"\(JSONDecodeError"):
    sample_quality.load_or_train(fewer, directory, dataclasses.replace(TINY, steps=3))


def test_distance_zero_for_identical_sets_symmetric_and_grows_with_noise(cache, arrays):
  test = arrays.test_images
  assert cache.frechet_distance(test, test) == pytest.approx(0.0, abs=1e-9)
  half = len(test) // 2
  a, b = test[:half], test[half:]
  assert cache.frechet_distance(a, b) == pytest.approx(cache.frechet_distance(b, a), rel=1e-12)
  rng = np.random.default_rng(0)
  distances = []
  for noise in (0, 2, 4, 8):  # uniform integer noise of +-noise levels, clipped to 0..16
    noisy = np.clip(test.astype(int) + rng.integers(-noise, noise + 1, test.shape), 0, 16)
    distances.append(cache.frechet_distance(noisy, test))
  assert distances[0] == pytest.approx(0.0, abs=1e-9)
  assert distances[1] < distances[2] < distances[3]
  # Real training images are closer to the test images than noisy or shifted ones.
  train_vs_test = cache.frechet_distance(arrays.train_images, test)
  shifted = np.roll(test, 2, axis=2)
  assert train_vs_test < distances[2] and train_vs_test < cache.frechet_distance(shifted, test)


BAD_IMAGES = [
    (np.zeros((4, 8, 8, 1), np.float32), r"generated must be integer images in \[0, 17\) of "
                                         r"shape \[N, 8, 8, 1\], got dtype float32; .*"
                                         r"quantize_samples"),
    (np.zeros((4, 8, 8, 3), np.uint8), r"generated must have shape \[N, 8, 8, 1\], got shape "
                                       r"\[4, 8, 8, 3\]"),
    (np.zeros((4, 64), np.uint8), r"generated must have shape \[N, 8, 8, 1\], got shape \[4, "
                                  r"64\]"),
    (np.full((4, 8, 8, 1), 17, np.uint8), r"generated must be integers in \[0, 17\), got values "
                                          r"in \[17, 17\]"),
    (np.zeros((1, 8, 8, 1), np.uint8), r"generated: need at least 2 images, got 1"),
]


@pytest.mark.parametrize("images,message", BAD_IMAGES,
                         ids=["float", "channels", "flat", "value-17", "one-image"])
def test_bad_images_are_one_line_errors(cache, arrays, images, message):
  with pytest.raises(ValueError, match=message) as error:
    cache.frechet_distance(images, arrays.test_images)
  assert "\n" not in str(error.value)


# --- samples ---------------------------------------------------------------------------------
def test_quantize_samples_excludes_nonfinite_and_counts_clipped():
  x = np.full((5, 2, 2, 1), 0.5, np.float32)
  x[1, 0, 0, 0] = np.nan
  x[2, 1, 1, 0] = -np.inf
  x[3, 0, 1, 0] = 1.0  # finite, just outside [0, 1): clipped to the top bin
  x[4, 0, 0, 0] = -3.0
  images, nonfinite, clipped = sample_quality.quantize_samples(x, 17)
  assert (nonfinite, clipped) == (2, 2) and images.dtype == np.uint8
  assert images.shape == (3, 2, 2, 1)
  assert images[1, 0, 1, 0] == 16 and images[2, 0, 0, 0] == 0
  assert np.all(images[0] == 8)  # floor(0.5 * 17)
  with pytest.raises(ValueError, match=r"x must be float samples \[N, H, W, C\]"):
    sample_quality.quantize_samples(images, 17)


def test_evaluate_sampler_counts_nonfinite_and_reaches_the_floor(cache, digits, arrays):
  seed, n = 5, 120
  order = np.sort(np.random.RandomState(seed).permutation(len(arrays.train_images))[:n])
  real = (arrays.train_images[order].astype(np.float32) + 0.5) / 17  # model space

  def sampler(count, temperature, batch_seed):
    """Temperature 1: the training images the floor uses, with every 4th one NaN (from
    batch seed 5 on); temperature 0: all NaN."""
    start = (batch_seed - seed) * 50
    x = real[start:start + count].copy()
    assert len(x) == count
    if temperature == 0:
      x[:] = np.nan
    else:
      x[::4, 0, 0, 0] = np.nan
    return x

  result = sample_quality.evaluate_sampler(sampler, digits, [1.0, 0.0], num_samples=n,
                                           seed=seed, batch_size=50, classifier=cache,
                                           arrays=arrays)
  assert result["num_samples"] == n and result["num_reference_images"] == n
  assert result["classifier_test_accuracy"] == cache.test_accuracy
  t1, t0 = result["temperatures"]["1"], result["temperatures"]["0"]
  assert t1["nonfinite_excluded"] == 13 + 13 + 5 and t1["num_used"] == n - 31  # 50, 50, 20
  assert t1["out_of_range_clipped"] == 0
  assert t0 == {"frechet_distance": None, "num_used": 0, "nonfinite_excluded": n,
                "out_of_range_clipped": 0}
  # The surviving samples are 3/4 of the floor's training images: close to the floor.
  floor = result["reference_frechet_distance"]
  assert floor > 0 and abs(t1["frechet_distance"] - floor) < 0.5 * floor
  assert "T=0 n/a (120 non-finite excluded)" in sample_quality.summary(result)

  # The same images without NaNs give exactly the floor.
  exact = sample_quality.evaluate_sampler(lambda c, t, s: real[(s - seed) * 50:][:c], digits,
                                          [1.0], num_samples=n, seed=seed, batch_size=50,
                                          classifier=cache, arrays=arrays)
  assert exact["temperatures"]["1"]["frechet_distance"] == pytest.approx(floor, rel=1e-9)
  with pytest.raises(ValueError, match=r"num_samples must be an integer >= 2, got 1"):
    sample_quality.evaluate_sampler(sampler, digits, [1.0], num_samples=1, classifier=cache)


def test_benchmark_rows_agree_with_the_cache_and_eval(cache, digits, arrays):
  """benchmarks/quality/sample_quality.py's distances are the ones eval.py and the cache report."""
  from benchmarks.quality import sample_quality as benchmark  # pylint: disable=g-import-not-at-top
  rows, details = benchmark.measure(cache, arrays, num_samples=100, seed=3)
  assert details["num_samples"] == 100 and len(details["floors"]) == benchmark.SUBSETS
  refs = cache.info["reference_distances"]
  assert rows[0]["value"] == pytest.approx(refs["train_vs_test"], rel=1e-9)
  assert rows[-1]["value"] == pytest.approx(refs["test_half_vs_half"], rel=1e-9)
  evaluated = sample_quality.evaluate_sampler(
      lambda n, t, s: np.zeros((n, 8, 8, 1), np.float32), digits, [1.0], num_samples=100,
      seed=3, classifier=cache, arrays=arrays)
  assert rows[1]["value"] == pytest.approx(evaluated["reference_frechet_distance"], rel=1e-9)
  assert all(f > 0 for f in details["floors"]) and rows[3]["value"] > 0

