"""SavedModel export with serving signatures that load with plain TensorFlow.

Signatures (H, W, C are the model's image shape; B = num_bins integer levels):
  * `log_prob` (also `serving_default`): `images` uint8 [N, H, W, C] ->
      `log_prob` float32 [N]: log-density in nats of the model at the bin centres
        x = (k + 0.5) / B, in the model's input space [0, 1)^D;
      `bits_per_dim` float32 [N]: -(log_prob - D log B) / (D log 2), the code length of the
        integer image under the bin-centre approximation of the dequantised model.
  * `sample`: `num` int32, `temperature` float32, `seed` int64 -> `images` uint8
      [num, H, W, C] (latent ~ N(0, temperature^2), decoded, floor(x * B) clipped to [0, B)).
  * `encode`: `images` uint8 -> `latent` float32 [N, H, W, C] (of the bin centres).
  * `decode`: `latent` float32 [N, H, W, C] -> `images` uint8.
The whole model state (weights, ActNorm state, LC split permutations) is inside; loading
needs only TensorFlow. Inputs of the wrong dtype or shape are rejected by the signatures'
input specs; integer values >= B by a check that names the allowed range.
"""

import math
import os
import shutil
import tempfile

import tensorflow as tf

from lcflow_tf import bijectors as lcb
from lcflow_tf import config as config_lib

SIGNATURES = ("serving_default", "log_prob", "sample", "encode", "decode")


def plain_variables(flow):
  """Every variable of `flow`'s bijector as the plain `tf.Variable` that holds it.

  Keras 3 network variables are unwrapped to the `tf.Variable` their `.value` is. The
  exported module tracks these, and not the Keras objects: when a Keras 3 variable is saved,
  TensorFlow writes a fresh copy of it into the SavedModel's graph, which the session-based
  loaders (`tf.compat.v1.saved_model.loader.load`, `saved_model_cli run`, TensorFlow
  Serving) restore while the signatures read the original, never-restored variable.

  Args:
    flow: an `lcflow_tf.Flow`.

  Returns:
    A tuple of distinct `tf.Variable`s (trainable and not: weights, ActNorm state, split
    permutations).

  Raises:
    TypeError: if a variable is neither a `tf.Variable` nor wraps one.
  """
  found, seen = [], set()
  for v in lcb.collect_variables(flow.bijector):
    plain = v if isinstance(v, tf.Variable) else getattr(v, "value", None)
    if not isinstance(plain, tf.Variable):
      raise TypeError(f"plain_variables: variable {getattr(v, 'path', v)!r} of type "
                      f"{type(v).__name__} does not wrap a tf.Variable.")
    if id(plain) not in seen:
      seen.add(id(plain))
      found.append(plain)
  return tuple(found)


class _Serving(tf.Module):
  """The exported object: the flow's variables plus the signature functions.

  The flow itself is deliberately not an attribute (see `plain_variables`): the functions
  reach it through their closures, and every variable they read is tracked here as a plain
  `tf.Variable`, so every loader restores exactly what the signatures read.
  """

  def __init__(self, flow, num_bins):
    super().__init__(name="lcflow_serving")
    self.model_variables = list(plain_variables(flow))
    self.num_bins = tf.constant(num_bins, tf.int32)
    self.image_shape = tf.constant(flow.image_shape, tf.int32)
    h, w, c = flow.image_shape
    bins = float(num_bins)
    dims = float(h * w * c)
    dtype = flow.dtype
    image_spec = tf.TensorSpec([None, h, w, c], tf.uint8, name="images")
    latent_spec = tf.TensorSpec([None, h, w, c], tf.float32, name="latent")

    def check_shape(t, what):
      return tf.debugging.assert_equal(
          tf.shape(t)[1:], self.image_shape,
          message=f"{what} must have shape [N, {h}, {w}, {c}]")

    def to_model_space(images):
      checks = [check_shape(images, "images"),
                tf.debugging.assert_less(
                    tf.cast(images, tf.int32), num_bins,
                    message=f"images must be integers in [0, {num_bins}) (num_bins={num_bins})")]
      with tf.control_dependencies(checks):
        return (tf.cast(images, dtype) + 0.5) / bins

    def to_images(x):
      k = tf.floor(tf.cast(x, tf.float32) * bins)
      return tf.cast(tf.clip_by_value(k, 0.0, bins - 1.0), tf.uint8)

    @tf.function(input_signature=[image_spec])
    def log_prob(images):
      lp = tf.cast(flow.log_prob(to_model_space(images)), tf.float32)
      bpd = -(lp - dims * math.log(bins)) / (dims * math.log(2.0))
      return {"log_prob": lp, "bits_per_dim": bpd}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name="num"),
                                  tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.int64, name="seed")])
    def sample(num, temperature, seed):
      checks = [tf.debugging.assert_non_negative(num, message="num must be >= 0"),
                tf.debugging.assert_non_negative(temperature,
                                                 message="temperature must be >= 0")]
      with tf.control_dependencies(checks):
        shape = tf.concat([[num], self.image_shape], 0)
      z = tf.random.stateless_normal(shape, seed=tf.stack([seed, tf.constant(1, tf.int64)]),
                                     dtype=dtype)
      return {"images": to_images(flow.decode(z * tf.cast(temperature, dtype)))}

    @tf.function(input_signature=[image_spec])
    def encode(images):
      return {"latent": tf.cast(flow.encode(to_model_space(images)), tf.float32)}

    @tf.function(input_signature=[latent_spec])
    def decode(latent):
      with tf.control_dependencies([check_shape(latent, "latent")]):
        latent = tf.cast(latent, dtype)
      return {"images": to_images(flow.decode(latent))}

    self.log_prob = log_prob
    self.sample = sample
    self.encode = encode
    self.decode = decode


def check_export_dir(export_dir, overwrite=False, protect=()):
  """Checks, before anything is written, that `export_dir` may be (re)written.

  Args:
    export_dir: the destination.
    overwrite: whether an existing `export_dir` may be replaced.
    protect: directories (e.g. the run's model_dir) that `export_dir` must neither be nor
      contain, so that `overwrite` can never delete them.

  Returns:
    The absolute path.

  Raises:
    ValueError: if `export_dir` is empty, is or contains a `protect` directory, exists and
      `overwrite` is False, is not a directory, or cannot be created (e.g. it lies under a
      regular file).
  """
  if not export_dir:
    raise ValueError("export_saved_model: export_dir must be a non-empty path.")
  export_dir = os.path.abspath(export_dir)
  for path in protect:
    path = os.path.abspath(path)
    if path == export_dir or path.startswith(export_dir.rstrip(os.sep) + os.sep):
      raise ValueError(f"export_saved_model: export_dir {export_dir} is or contains the run's "
                       f"model_dir {path}; choose another export_dir.")
  if os.path.exists(export_dir) and not overwrite:
    raise ValueError(f"export_saved_model: export_dir {export_dir} already exists; pass "
                     "overwrite=True (export.py --overwrite, train.py --overwrite_export) to "
                     "replace it.")
  config_lib.check_creatable_dir(export_dir, "export_saved_model: export_dir")
  return export_dir


def export_saved_model(flow, export_dir, num_bins, overwrite=False):
  """Writes `flow` as a self-contained SavedModel at `export_dir`, atomically.

  The model is written to a temporary directory beside `export_dir` and renamed into place,
  so an interrupted export never leaves a half-written model there.

  Args:
    flow: an initialised `lcflow_tf.Flow`.
    export_dir: destination directory.
    num_bins: integer levels of the images (e.g. 256, or 17 for digits).
    overwrite: replace an existing `export_dir`.

  Returns:
    `export_dir`.

  Raises:
    ValueError: if `num_bins` < 2, or `export_dir` fails `check_export_dir`.
  """
  if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
    raise ValueError(f"export_saved_model: num_bins must be an int >= 2, got {num_bins!r}.")
  export_dir = check_export_dir(export_dir, overwrite)
  parent = os.path.dirname(export_dir)
  os.makedirs(parent, exist_ok=True)
  serving = _Serving(flow, num_bins)
  signatures = {"serving_default": serving.log_prob, "log_prob": serving.log_prob,
                "sample": serving.sample, "encode": serving.encode, "decode": serving.decode}
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    tf.saved_model.save(serving, staging, signatures=signatures)
    if os.path.exists(export_dir):
      old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
      os.rename(export_dir, os.path.join(old, "model"))
      os.rename(staging, export_dir)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(staging, export_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return export_dir
