"""Evaluation of a trained run: test bits/dim, samples, reconstructions, LC heatmaps.

`evaluate_model_dir(model_dir, eval_config, output_dir)` rebuilds the flow from the run's
`config.json`, restores a checkpoint (the latest, or a given one) with its averaged weights
(`weights="ema"`, the default; the raw weights with `weights="raw"`, or when the checkpoint
holds no averages) and writes into `output_dir`:
  * `results.json`: every number below, the checkpoint, its step and which weights;
  * `samples_t{T}.png`: a grid of samples per temperature;
  * `lc_level{l}.png`, `lc_overview.png`: LC heatmaps and the split (see `lcflow_tf.viz`);
  * TensorBoard events with the test scalars at the checkpoint's step
    (`summaries.write_evaluation`; by default `MODEL_DIR/eval`, beside `MODEL_DIR/train`).
With `EvalConfig.sample_quality`, `results.json` also holds `sample_quality`: the Frechet
distance of generated to test images per temperature on the features of a cached classifier
(see `lcflow_tf.sample_quality.evaluate_flow`).

Test bits/dim: every held-out image is dequantised K times (`x = (k + u) / bins`, the noise
of each pass seeded by `seed + pass`), each time giving the per-image bound
`-(log p(x) - D log bins) / (D log 2)`. Reported: the mean over images and passes, and its
standard error over images (of each image's K-pass mean); also the importance-weighted bound
`-(log mean_k p(x_k) - D log bins) / (D log 2)` with the same K samples, which is tighter.
"""

import dataclasses
import functools
import math
import os
import time

import numpy as np
import tensorflow as tf

from lcflow_tf import averaging
from lcflow_tf import checkpoints
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import files
from lcflow_tf import flows
from lcflow_tf import sample_quality
from lcflow_tf import summaries
from lcflow_tf import viz

RESULTS_FILE = "results.json"


@dataclasses.dataclass(frozen=True)
class LoadedRun:
  """A run restored from its model directory.

  Attributes:
    flow: the model, holding the weights named by `weights`.
    train_config: the run's `TrainConfig`.
    checkpoint: the restored checkpoint prefix.
    step: its step.
    weights: "ema" (the flow holds the weight averages) or "raw" (the trained weights).
    image_shape: (H, W, C) of the model's images.
    num_bins: integer levels of the images.
    dataset: the `ImageDataset` (the one given to `load_run`, else the run's, read on first
      use: rebuilding, sampling and exporting the model never need it).
  """
  flow: flows.Flow
  train_config: config_lib.TrainConfig
  checkpoint: str
  step: int
  weights: str
  image_shape: tuple
  num_bins: int
  given_dataset: data.ImageDataset | None = dataclasses.field(default=None, repr=False)

  @functools.cached_property
  def dataset(self):
    if self.given_dataset is not None:
      return self.given_dataset
    return self.train_config.load_dataset()


def load_run(model_dir, checkpoint=None, dataset=None, weights="ema", validate_args=True):
  """Rebuilds the flow of `model_dir` and restores `checkpoint` (default: the latest).

  The image shape and the number of levels come from the run's `config.json`
  (`config.read_data_record`), so the dataset is not read; a run written before that record
  existed is rebuilt from its dataset's shape instead. The flow checks its input values
  (`flows.Flow`'s `validate_args`) unless told otherwise: a loaded model is evaluated,
  exported and explored, not trained, and the checks cost nothing measurable there.

  Args:
    model_dir: a directory written by `lcflow_tf.training`.
    checkpoint: a checkpoint prefix (e.g. `model_dir/ckpt-2000`), or None for the latest.
    dataset: an `ImageDataset` to evaluate on (default: the run's dataset, read when
      `LoadedRun.dataset` is first used).
    weights: "ema": the flow gets the checkpoint's weight averages (see
      `lcflow_tf.averaging`); when the checkpoint has none (trained with `ema_decay=0`), the
      raw weights, with a logged note. "raw": the trained
      weights. `LoadedRun.weights` says which the flow holds.
    validate_args: passed to `flows.Flow`: NaN, infinite or out-of-[0, 1) images and
      non-finite latents raise instead of giving NaN or meaningless values. False for code
      that measures how a model behaves on such values (e.g. `benchmarks/numerics/robustness.py`).

  Raises:
    ValueError: for a bad `weights`; when `model_dir` does not exist, has no `config.json` or
      no checkpoint, the checkpoint files are unreadable (corrupted, truncated), or the
      checkpoint does not match the model.
  """
  averaging.check_weights(weights)
  if not os.path.isdir(model_dir):
    raise ValueError(f"model_dir {model_dir} does not exist (or is not a directory); give the "
                     "directory of a training run (lcflow-train --model_dir=...).")
  train_config = config_lib.read_train_config(model_dir)
  if train_config is None:
    raise ValueError(f"model_dir {model_dir} has no {config_lib.CONFIG_FILE}; it is not a "
                     "training run directory (lcflow-train --model_dir=...).")
  checkpoint = checkpoints.resolve(model_dir, checkpoint)
  record = config_lib.read_data_record(model_dir)
  if record is None:  # a run written before config.json recorded its data
    dataset = dataset or train_config.load_dataset()
    record = (tuple(dataset.image_shape), int(dataset.num_bins))
  elif dataset is not None and (tuple(dataset.image_shape), dataset.num_bins) != record:
    raise ValueError(f"dataset {dataset.name} has images of shape {list(dataset.image_shape)} "
                     f"with {dataset.num_bins} levels, the run in {model_dir} was trained on "
                     f"{list(record[0])} with {record[1]}.")
  image_shape, num_bins = record
  flow = flows.Flow(train_config.flow_config(image_shape), validate_args=validate_args,
                    open_junctions_from=train_config.open_junctions_from)
  step, weights = checkpoints.restore_flow(
      checkpoint, flow, weights, train_config.ema_decay,
      model=f"the model of {model_dir}/{config_lib.CONFIG_FILE}")
  return LoadedRun(flow=flow, train_config=train_config, checkpoint=checkpoint, step=step,
                   weights=weights, image_shape=image_shape, num_bins=num_bins,
                   given_dataset=dataset)


def held_out_bits_per_dim(flow, images, num_bins, dequant_samples=4, batch_size=256, seed=0):
  """Bits/dim of every image of `images` over `dequant_samples` dequantisation passes.

  Args:
    flow: the model.
    images: unbatched integer images `tf.data.Dataset` (e.g. `ImageDataset.test()`).
    num_bins: integer levels of the images.
    dequant_samples: K passes.
    batch_size: images per batch.
    seed: pass k uses the noise seed `seed + k`.

  Returns:
    dict with `bits_per_dim` (mean), `bits_per_dim_stderr`, `bits_per_dim_iw`
    (importance-weighted K-sample bound), `num_images`, `dequant_samples`, and
    `per_image` [N] (each image's mean over the passes, numpy).
  """
  log_prob = tf.function(flow.log_prob, autograph=False)
  passes = []
  for k in range(dequant_samples):
    values = [log_prob(x).numpy()
              for x in data.make_eval_pipeline(images, batch_size, num_bins, seed + k)]
    passes.append(np.concatenate(values).astype(np.float64))
  log_probs = np.stack(passes)  # [K, N]

  def to_bpd(lp):
    return flows.log_prob_to_bits_per_dim(lp, flow.image_shape, num_bins)

  per_image = to_bpd(log_probs).mean(axis=0)
  n = per_image.size
  iw = np.logaddexp.reduce(log_probs, axis=0) - math.log(dequant_samples)
  return {
      "bits_per_dim": float(per_image.mean()),
      "bits_per_dim_stderr": float(per_image.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0,
      "bits_per_dim_iw": float(to_bpd(iw).mean()),
      "num_images": int(n),
      "dequant_samples": int(dequant_samples),
      "per_image": per_image,
  }


def reconstruction_error(flow, images, num_bins, num_images=256, seed=0):
  """max |decode(encode(x)) - x| over the first `num_images` dequantised images.

  NaN when a round trip is not finite, also when an image's latent overflows (which a flow
  with `validate_args` would refuse to decode).
  """
  x = next(iter(data.make_eval_pipeline(images.take(num_images), num_images, num_bins, seed)))
  z = flow.encode(x)
  if not bool(tf.reduce_all(tf.math.is_finite(z))):
    return math.nan
  x_rec = flow.decode(z)
  return float(tf.reduce_max(tf.abs(tf.cast(x_rec, tf.float64) - tf.cast(x, tf.float64))))


def evaluate(flow, dataset, eval_config, output_dir):
  """Evaluates `flow` on `dataset`'s held-out split; writes PNGs and returns the numbers.

  Returns:
    dict of the numbers and file names (without `results.json` itself; see
    `evaluate_model_dir`).
  """
  c = eval_config
  t0 = time.time()
  if c.sample_quality:
    sample_quality.check_dataset(dataset)  # before the long part
  os.makedirs(output_dir, exist_ok=True)
  bpd = held_out_bits_per_dim(flow, dataset.test(), dataset.num_bins, c.dequant_samples,
                          c.batch_size, c.seed)
  bpd.pop("per_image")
  results = {"test_" + k if k.startswith("bits") else k: v for k, v in bpd.items()}
  if c.reconstruction_images:
    results["reconstruction_max_abs_error"] = reconstruction_error(
        flow, dataset.test(), dataset.num_bins, c.reconstruction_images, c.seed)
    results["reconstruction_images"] = min(
        c.reconstruction_images, dataset.num_test or c.reconstruction_images)
  results["samples"], results["samples_nonfinite_fraction"] = {}, {}
  for t in c.temperatures:
    x = flow.sample(c.num_samples, temperature=float(t), seed=c.seed).numpy()
    path = viz.save_png(viz.samples_to_grid(x, dataset.num_bins),
                        os.path.join(output_dir, viz.sample_png_name(t)))
    results["samples"][f"{t:g}"] = os.path.basename(path)
    results["samples_nonfinite_fraction"][f"{t:g}"] = float(np.mean(~np.isfinite(x)))
  if c.sample_quality:
    results["sample_quality"] = sample_quality.evaluate_flow(
        flow, dataset, c.temperatures, c.sample_quality_samples, c.seed, c.batch_size,
        c.classifier_dir, c.classifier)
  heatmaps = viz.write_lc_heatmaps(flow, output_dir) if flow.lc_statistics.has_data() else []
  results["lc_heatmaps"] = [os.path.basename(p) for p in heatmaps]
  results["split"] = flow.config.split
  results["split_fixed"] = bool(flow.split_fixed.numpy())
  results["lc_statistics_images"] = int(flow.lc_statistics.count.numpy())
  results["dataset"] = dataset.name
  results["num_bins"] = int(dataset.num_bins)
  results["eval_config"] = {**dataclasses.asdict(c), "temperatures": list(c.temperatures)}
  results["eval_seconds"] = time.time() - t0
  return results


def evaluate_model_dir(model_dir, eval_config=None, output_dir=None, checkpoint=None,
                       dataset=None, weights="ema"):
  """Loads a run (see `load_run`), evaluates it (see `evaluate`), writes `results.json`.

  Args:
    model_dir: the run's directory.
    eval_config: an `EvalConfig` (default settings when None).
    output_dir: where the files go (default `model_dir/eval`).
    checkpoint: a checkpoint prefix, or None for the latest.
    dataset: an `ImageDataset` (default: the run's dataset).
    weights: "ema" (the weight averages, falling back to the raw weights when the
      checkpoint has none) or "raw"; `results["weights"]` records which were evaluated.

  Returns:
    (results dict, path of results.json).
  """
  averaging.check_weights(weights)
  eval_config = eval_config or config_lib.EvalConfig()
  if output_dir is not None:
    files.check_creatable_dir(output_dir, "output_dir")
  if eval_config.sample_quality and eval_config.classifier_dir is not None:
    files.check_creatable_dir(eval_config.classifier_dir, "classifier_dir")
  run = load_run(model_dir, checkpoint, dataset, weights=weights)
  output_dir = output_dir or os.path.join(model_dir, "eval")
  results = evaluate(run.flow, run.dataset, eval_config, output_dir)
  results["checkpoint"] = os.path.abspath(run.checkpoint)
  results["step"] = run.step
  results["weights"] = run.weights
  path = os.path.join(output_dir, RESULTS_FILE)
  files.write_json_atomic(path, results)
  summaries.write_evaluation(output_dir, results, run.step)
  return results, path
