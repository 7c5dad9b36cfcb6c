"""Sample quality as a number: a Frechet distance on the features of our own classifier.

A domain-specific FID: generated and test images are compared through the penultimate
features of a small CNN trained on the dataset's own labelled training split, because no
pretrained Inception weights can be downloaded. Its values are comparable between models
evaluated with the same cached classifier, not with published FIDs. Three modules:
  * `lcflow_tf.sample_quality.classifier`: `ClassifierConfig`, the network, its training and
    its on-disk cache (`load_or_train`, `default_classifier_dir`, the cache key).
  * `lcflow_tf.sample_quality.metric`: the distance of a generator's samples to the test
    images per temperature, with the floor a perfect model would reach (`evaluate_sampler`,
    `evaluate_flow`, `summary`).
  * `lcflow_tf.sample_quality.images`: a labelled dataset in memory (`load_arrays`), the check
    of integer images, and model-space samples -> integer images (`quantize_samples`).
The maths of the distance itself is `lcflow_tf.frechet`.

The package re-exports the public names of all three, so
`from lcflow_tf import sample_quality; sample_quality.evaluate_flow(flow, dataset, [0.7])`.
"""

from lcflow_tf.sample_quality.classifier import ARCHITECTURE
from lcflow_tf.sample_quality.classifier import CACHE_ENV
from lcflow_tf.sample_quality.classifier import INFO_FILE
from lcflow_tf.sample_quality.classifier import ClassifierConfig
from lcflow_tf.sample_quality.classifier import FeatureClassifier
from lcflow_tf.sample_quality.classifier import build_classifier
from lcflow_tf.sample_quality.classifier import default_cache_root
from lcflow_tf.sample_quality.classifier import default_classifier_dir
from lcflow_tf.sample_quality.classifier import load_or_train
from lcflow_tf.sample_quality.classifier import reference_distances
from lcflow_tf.sample_quality.images import DatasetArrays
from lcflow_tf.sample_quality.images import check_dataset
from lcflow_tf.sample_quality.images import check_images
from lcflow_tf.sample_quality.images import load_arrays
from lcflow_tf.sample_quality.images import quantize_samples
from lcflow_tf.sample_quality.metric import evaluate_flow
from lcflow_tf.sample_quality.metric import evaluate_sampler
from lcflow_tf.sample_quality.metric import flow_sampler
from lcflow_tf.sample_quality.metric import summary

__all__ = [
    "ARCHITECTURE", "CACHE_ENV", "INFO_FILE", "ClassifierConfig", "DatasetArrays",
    "FeatureClassifier", "build_classifier", "check_dataset", "check_images",
    "default_cache_root", "default_classifier_dir", "evaluate_flow", "evaluate_sampler",
    "flow_sampler", "load_arrays", "load_or_train", "quantize_samples", "reference_distances",
    "summary",
]
