"""The sample-quality metric's classifier, and the Frechet distances between real image sets.

Trains (or loads from its cache) the feature classifier of `lcflow_tf.sample_quality` for a
dataset and reports its test accuracy and training time, and the distances between sets of
REAL images, which tell what a model's distance can be compared against:
  * all training images against all test images (the floor with the most images);
  * N training images against the first N test images, for 6 disjoint training subsets (N =
    10k by default, `eval.py --sample_quality`'s default; the subset with `--seed` is what
    eval.py reports as `reference_frechet_distance`): the floor at that sample size and how
    much it moves between subsets;
  * two disjoint sets of N training images (no train/test difference: pure sample-size noise);
  * the first against the second half of the test set (5k vs 5k on Fashion-MNIST).

  python benchmarks/quality/sample_quality.py --dataset fashion_mnist

The classifier lives in the default cache (`lcflow_tf.sample_quality.default_classifier_dir`,
or --classifier_dir), so `eval.py --sample_quality` reuses it; a cached one is loaded and
its stored training time and date are reported (--retrain trains anew). Writes
docs/results/sample_quality_<dataset>.{json,md}.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks.common import results
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import frechet
from lcflow_tf import sample_quality

SUBSETS = 6


def measure(classifier, arrays, num_samples, seed):
  """Rows of distances between real image sets (see the module docstring)."""
  fd = frechet.frechet_distance_of_features
  train = classifier.features(arrays.train_images)
  test = classifier.features(arrays.test_images)
  n = min(num_samples, len(test), len(train) // 2)
  half = len(test) // 2
  rows = [{"comparison": "all training vs all test images", "images": f"{len(train)} vs "
                                                                        f"{len(test)}",
           "value": fd(train, test)}]
  order = np.random.RandomState(seed).permutation(len(train))
  subsets = [order[i * n:(i + 1) * n] for i in range(min(SUBSETS, len(train) // n))]
  floors = [fd(train[np.sort(s)], test[:n]) for s in subsets]
  rows.append({"comparison": f"training subset (seed {seed}) vs first test images "
                             "(eval.py's reference_frechet_distance)",
               "images": f"{n} vs {n}", "value": floors[0]})
  rows.append({"comparison": f"{len(floors)} disjoint training subsets vs first test images: "
                             "mean +- std (min..max)",
               "images": f"{n} vs {n}",
               "value": f"{np.mean(floors):.4g} +- {np.std(floors, ddof=1):.2g} "
                                   f"({min(floors):.4g}..{max(floors):.4g})"})
  rows.append({"comparison": "two disjoint training subsets (sample-size noise only)",
               "images": f"{n} vs {n}", "value": fd(train[np.sort(subsets[0])],
                                                               train[np.sort(subsets[1])])})
  rows.append({"comparison": "first vs second half of the test set",
               "images": f"{half} vs {half}",
               "value": fd(test[:half], test[half:2 * half])})
  return rows, {"floors": floors, "num_samples": n}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="fashion_mnist", choices=data.DATASETS)
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--classifier_dir", default=None,
                      help="default: sample_quality.default_classifier_dir(dataset)")
  parser.add_argument("--classifier_steps", type=int,
                      default=sample_quality.ClassifierConfig().steps)
  parser.add_argument("--num_samples", type=int, default=config_lib.EvalConfig().
                      sample_quality_samples, help="N of the subset comparisons")
  parser.add_argument("--seed", type=int, default=config_lib.EvalConfig().seed,
                      help="the training subset seed (eval.py's --seed)")
  parser.add_argument("--retrain", action="store_true", help="train even when cached")
  parser.add_argument("--name", default=None, help="default sample_quality_<dataset>")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  try:
    dataset = data.load_dataset(args.dataset, args.data_dir)
    arrays = sample_quality.load_arrays(dataset)
    directory = args.classifier_dir or sample_quality.default_classifier_dir(dataset)
    cached = os.path.exists(os.path.join(directory, sample_quality.INFO_FILE))
    classifier = sample_quality.load_or_train(
        dataset, directory, sample_quality.ClassifierConfig(steps=args.classifier_steps),
        retrain=args.retrain, arrays=arrays)
    trained_now = args.retrain or not cached
    rows, details = measure(classifier, arrays, args.num_samples, args.seed)
  except ValueError as e:
    parser.error(str(e))
  info = classifier.info
  c = info["config"]
  rows = [{"comparison": "classifier test accuracy", "images": f"{len(arrays.test_images)}",
           "value": info["test_accuracy"]},
          {"comparison": "classifier training accuracy", "images": f"{len(arrays.train_images)}",
           "value": info["train_accuracy"]}] + rows
  notes = (f"`value`: the Frechet distance (rows comparing image sets) or the fraction "
           f"classified correctly (accuracy rows). Classifier: {info['architecture']}; "
           f"{c['steps']} Adam steps of {c['batch_size']} images (learning rate "
           f"{c['learning_rate']:g}, cosine decay), {info['training_seconds']:.0f} s of training "
           f"on {info['date'][:10]}{'' if trained_now else ' (loaded from its cache)'}; "
           f"features: the {c['feature_dim']} ReLU units of the penultimate layer. Images enter "
           f"as k / (bins - 1). Distances between real image sets only: a model's samples at N "
           f"= {details['num_samples']} cannot be expected below the subset rows, and "
           "differences between models smaller than their spread are noise.")
  name = args.name or f"sample_quality_{args.dataset.replace('/', '_')}"
  print(results.write(name, results.command_line(), rows,
                      ["comparison", "images", "value"], notes=notes,
                      results_dir=args.results_dir,
                      details={"classifier": info, **details}))


if __name__ == "__main__":
  main()
