"""The sample-quality metric: Frechet distance of generated to test images, per temperature.

`evaluate_sampler(sample_fn, dataset, temperatures)` draws N samples per temperature from any
generator, turns them into integer images (`images.quantize_samples`), and measures the
Frechet distance (`lcflow_tf.frechet.frechet_distance_of_features`) between their features
and those of the first min(N, test size) test images, on the cached feature classifier of
the dataset (`classifier.load_or_train`). Beside it: the floor a perfect model would reach
at the same sample sizes (N training images against the same test images), and the
classifier's own reference distances. `evaluate_flow` does the same for a `Flow`;
`summary` writes the result as one line.

Excluding non-finite samples flatters a model: the distance describes only the samples that
decoded, so always read it with `nonfinite_excluded`.
"""

import os

import numpy as np

from lcflow_tf import checks
from lcflow_tf import frechet
from lcflow_tf.sample_quality import classifier as classifier_lib
from lcflow_tf.sample_quality import images as images_lib


def flow_sampler(flow):
  """`sample_fn(n, temperature, seed)` of a `Flow`, for `evaluate_sampler`."""
  return lambda n, temperature, seed: flow.sample(n, temperature=temperature, seed=seed)


def evaluate_sampler(sample_fn, dataset, temperatures, num_samples=10000, seed=0,
                     batch_size=500, classifier_dir=None, classifier_config=None,
                     classifier=None, arrays=None):
  """Frechet distance of generated to test images, per temperature.

  Args:
    sample_fn: `sample_fn(n, temperature, seed)` -> float model-space samples [n, H, W, C]
      (e.g. `flow_sampler(flow)`, or a wrapper around another library's model). Batch b of
      each temperature uses the seed `seed + b`.
    dataset: the labelled `ImageDataset` the model was trained on.
    temperatures: sampling temperatures (numbers >= 0).
    num_samples: N >= 2 generated images per temperature; the test side uses the first
      min(N, test size) test images.
    seed: the seed of each temperature's first batch (see `sample_fn`).
    batch_size: images per `sample_fn` call.
    classifier_dir: see `classifier.load_or_train` (ignored when `classifier`).
    classifier_config: see `classifier.load_or_train` (ignored when `classifier`).
    classifier: a `FeatureClassifier` to use instead of loading one.
    arrays: `images.load_arrays(dataset)`, when the caller has it already.

  Returns:
    dict: `classifier_dir`, `classifier_test_accuracy`, `classifier_reference_distances`
    (see `classifier.reference_distances`), `num_samples`, `num_reference_images`,
    `reference_frechet_distance` (N training images against the same test images: the floor
    at these sample sizes), and `temperatures`: {"T": {`frechet_distance` (None when fewer
    than 2 samples are finite), `num_used`, `nonfinite_excluded`, `out_of_range_clipped`}}.

  Raises:
    ValueError: bad arguments, or see `classifier.load_or_train`.
  """
  checks.check_int("num_samples", num_samples, 2)  # a covariance needs 2 samples
  checks.check_int("batch_size", batch_size, 1)
  temperatures = [float(t) for t in temperatures]
  for t in temperatures:
    checks.check_number("temperatures", t, 0.0, low_open=False)
  arrays = arrays or images_lib.load_arrays(dataset)
  classifier = classifier or classifier_lib.load_or_train(dataset, classifier_dir,
                                                          classifier_config, arrays=arrays)
  reference = classifier.features(arrays.test_images[:num_samples])
  order = np.random.RandomState(seed).permutation(len(arrays.train_images))[:num_samples]
  result = {
      "classifier_dir": os.path.abspath(classifier.directory),
      "classifier_test_accuracy": classifier.test_accuracy,
      "classifier_reference_distances": classifier.info.get("reference_distances"),
      "num_samples": num_samples,
      "num_reference_images": int(len(reference)),
      "reference_frechet_distance": frechet.frechet_distance_of_features(
          classifier.features(arrays.train_images[np.sort(order)]), reference),
      "temperatures": {},
  }
  for t in temperatures:
    images, nonfinite, outside = _draw_samples(sample_fn, t, num_samples, batch_size, seed,
                                               dataset.num_bins)
    distance = (frechet.frechet_distance_of_features(classifier.features(images), reference)
                if len(images) >= 2 else None)
    result["temperatures"][f"{t:g}"] = {
        "frechet_distance": distance, "num_used": int(len(images)),
        "nonfinite_excluded": nonfinite, "out_of_range_clipped": outside}
  return result


def _draw_samples(sample_fn, temperature, num_samples, batch_size, seed, num_bins):
  """`num_samples` quantized samples in batches (batch b with seed `seed + b`).

  Returns:
    (images kept, non-finite samples excluded, values clipped into range), see
    `images.quantize_samples`.
  """
  images, nonfinite, outside = [], 0, 0
  for b, start in enumerate(range(0, num_samples, batch_size)):
    x = sample_fn(min(batch_size, num_samples - start), temperature, seed + b)
    kept, excluded, clipped = images_lib.quantize_samples(x, num_bins)
    images.append(kept)
    nonfinite, outside = nonfinite + excluded, outside + clipped
  return np.concatenate(images), nonfinite, outside


def evaluate_flow(flow, dataset, temperatures, num_samples=10000, seed=0, batch_size=500,
                  classifier_dir=None, classifier_config=None, classifier=None):
  """`evaluate_sampler` with the samples of a `Flow` (see there)."""
  return evaluate_sampler(flow_sampler(flow), dataset, temperatures, num_samples, seed,
                          batch_size, classifier_dir, classifier_config, classifier)


def summary(result):
  """One line of text for the dict of `evaluate_sampler`."""
  parts = []
  for t, r in result["temperatures"].items():
    fd = "n/a" if r["frechet_distance"] is None else f"{r['frechet_distance']:.4g}"
    excluded = f" ({r['nonfinite_excluded']} non-finite excluded)" if r[
        "nonfinite_excluded"] else ""
    parts.append(f"T={t} {fd}{excluded}")
  return (f"sample quality (Frechet distance on classifier features, {result['num_samples']} "
          f"samples vs {result['num_reference_images']} test images; training images give "
          f"{result['reference_frechet_distance']:.4g}; classifier test accuracy "
          f"{result['classifier_test_accuracy']:.4f}): " + ", ".join(parts))
