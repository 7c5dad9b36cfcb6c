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
needs only TensorFlow, with `tf.saved_model.load` or with the session-based loaders
(`tf.compat.v1.saved_model.loader.load`, `saved_model_cli run`, TensorFlow Serving), which
give the same outputs. Inputs of the wrong dtype or shape are rejected by the signatures'
input specs; integer values >= B by a check that names the allowed range.

`version=N` writes TensorFlow Serving's layout `export_dir/N/`.
"""

import os

import tensorflow as tf

from lcflow_tf import bijectors as lcb
from lcflow_tf import checks
from lcflow_tf import files
from lcflow_tf import flows

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
    dtype = flow.dtype
    image_spec = tf.TensorSpec([None, h, w, c], tf.uint8, name="images")
    latent_spec = tf.TensorSpec([None, h, w, c], tf.float32, name="latent")

    def to_model_space(images):
      with tf.control_dependencies(_check_images(images, self.image_shape, flow.image_shape,
                                                 num_bins)):
        return (tf.cast(images, dtype) + 0.5) / float(num_bins)

    @tf.function(autograph=False, input_signature=[image_spec])
    def log_prob(images):
      lp = tf.cast(flow.log_prob(to_model_space(images)), tf.float32)
      return {"log_prob": lp,
              "bits_per_dim": flows.log_prob_to_bits_per_dim(lp, flow.image_shape, num_bins)}

    @tf.function(autograph=False,
                 input_signature=[tf.TensorSpec([], tf.int32, name="num"),
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
      return {"images": _to_images(flow.decode(z * tf.cast(temperature, dtype)), num_bins)}

    @tf.function(autograph=False, input_signature=[image_spec])
    def encode(images):
      return {"latent": tf.cast(flow.encode(to_model_space(images)), tf.float32)}

    @tf.function(autograph=False, input_signature=[latent_spec])
    def decode(latent):
      with tf.control_dependencies([_check_shape(latent, self.image_shape, flow.image_shape,
                                                 "latent")]):
        # tf.identity: a cast to the same dtype adds no op, so the check would not run first.
        latent = tf.identity(tf.cast(latent, dtype))
      return {"images": _to_images(flow.decode(latent), num_bins)}

    self.log_prob = log_prob
    self.sample = sample
    self.encode = encode
    self.decode = decode


def _check_shape(t, shape_tensor, image_shape, what):
  """An assertion that `t` is [N, H, W, C] with `shape_tensor` (= `image_shape`) [H, W, C]."""
  h, w, c = image_shape
  return tf.debugging.assert_equal(tf.shape(t)[1:], shape_tensor,
                                   message=f"{what} must have shape [N, {h}, {w}, {c}]")


def _check_images(images, shape_tensor, image_shape, num_bins):
  """The assertions on integer input images: their shape and values below `num_bins`."""
  return [_check_shape(images, shape_tensor, image_shape, "images"),
          tf.debugging.assert_less(
              tf.cast(images, tf.int32), num_bins,
              message=f"images must be integers in [0, {num_bins}) (num_bins={num_bins})")]


def _to_images(x, num_bins):
  """Model-space values -> uint8 images: the bin of each value, clipped to [0, num_bins)."""
  bins = float(num_bins)
  k = tf.floor(tf.cast(x, tf.float32) * bins)
  return tf.cast(tf.clip_by_value(k, 0.0, bins - 1.0), tf.uint8)


def check_version(version, caller="export_saved_model"):
  """Raises ValueError unless `version` is None or an int >= 1 (a TF Serving version folder)."""
  if version is not None and not (checks.is_int(version) and version >= 1):
    raise ValueError(f"{caller}: version must be None or an int >= 1 (the number of the "
                     f"TensorFlow Serving version folder), got {version!r}.")


def check_export_dir(export_dir, overwrite=False, protect=(), version=None,
                     caller="export_saved_model", protected="the run's model_dir"):
  """Checks, before anything is written, that the export's directory may be (re)written.

  Args:
    export_dir: the destination; with `version`, the model base path of TensorFlow Serving
      (a directory of numbered version folders), and the SavedModel goes to
      `export_dir/version`.
    overwrite: whether an existing SavedModel directory may be replaced (other version
      folders of a model base path are never touched).
    protect: directories (e.g. the run's model_dir) that the SavedModel directory must neither
      be nor contain, so that `overwrite` can never delete them.
    version: None, or an int >= 1.
    caller: the function named in the messages.
    protected: what `protect` holds, for the messages.

  Returns:
    The absolute path of the SavedModel directory: `export_dir` or `export_dir/version`.

  Raises:
    ValueError: if `export_dir` is empty, `version` is not None or an int >= 1, the SavedModel
      directory is or contains a `protect` directory, or exists and `overwrite` is False, or
      is not a directory or cannot be created (e.g. it lies under a regular file); or, with
      `version`, if `export_dir` is itself a SavedModel.
  """
  if not export_dir:
    raise ValueError(f"{caller}: export_dir must be a non-empty path.")
  check_version(version, caller)
  base = os.path.abspath(export_dir)
  target = base if version is None else os.path.join(base, str(version))
  for path in protect:
    path = os.path.abspath(path)
    if path == target or path.startswith(target.rstrip(os.sep) + os.sep):
      raise ValueError(f"{caller}: export_dir {target} is or contains {protected} {path}; "
                       "choose another export_dir.")
  if version is not None and tf.saved_model.contains_saved_model(base):
    raise ValueError(f"{caller}: export_dir {base} is itself a SavedModel; with version="
                     f"{version} it must be a model base path (a directory of numbered version "
                     "folders), so choose another export_dir.")
  if os.path.exists(target) and not overwrite:
    what = "export_dir" if version is None else f"version folder {version} of export_dir"
    raise ValueError(f"{caller}: {what} {target} already exists; pass overwrite=True "
                     "(export.py --overwrite, train.py --overwrite_export) to replace it.")
  files.check_creatable_dir(target, f"{caller}: export_dir")
  return target


def export_saved_model(flow, export_dir, num_bins, overwrite=False, version=None):
  """Writes `flow` as a self-contained SavedModel, atomically.

  The model is written to a temporary directory beside its destination and renamed into
  place, so an interrupted export never leaves a half-written model there. The result loads
  with `tf.saved_model.load` and with the session-based loaders
  (`tf.compat.v1.saved_model.loader.load`, `saved_model_cli run`, TensorFlow Serving).

  Args:
    flow: an initialised `lcflow_tf.Flow`.
    export_dir: destination directory; with `version`, TensorFlow Serving's model base path.
    num_bins: integer levels of the images (e.g. 256, or 17 for digits).
    overwrite: replace an existing destination (`export_dir`, or `export_dir/version`).
    version: None, or an int >= 1: write TensorFlow Serving's layout `export_dir/version/`
      (other version folders there are kept).

  Returns:
    The SavedModel directory written (absolute): `export_dir` or `export_dir/version`.

  Raises:
    ValueError: if `num_bins` < 2, or the destination fails `check_export_dir`.
  """
  checks.check_int("num_bins", num_bins, 2, caller="export_saved_model")
  target = check_export_dir(export_dir, overwrite, version=version)
  serving = _Serving(flow, num_bins)
  signatures = {"serving_default": serving.log_prob, "log_prob": serving.log_prob,
                "sample": serving.sample, "encode": serving.encode, "decode": serving.decode}
  files.replace_dir_atomically(
      target, lambda path: tf.saved_model.save(serving, path, signatures=signatures))
  return target
