"""Numerical robustness of trained runs: finite samples, exact round trips, no blow-ups.

For each trained run (a model_dir written by train.py or a benchmark) this measures
  * samples: how many of `--num_samples` samples are non-finite at each temperature, and the
    largest |x| among the finite ones (model space is [0, 1), so anything far outside it is a
    numerical excursion even when finite);
  * round trips: every held-out image, dequantised with the ablation's noise (one pass, seed
    1234), goes image -> latent -> image; reported are the largest absolute error, how many
    images exceed `--max_error` and how many become non-finite; and every held-out image at
    its bin centres, x = (k + 0.5) / bins, goes through the same round trip, which must give
    back every integer pixel k = floor(x' * bins) (an image "loses a pixel" otherwise; bin
    centres rather than the dequantised values, whose noise can sit within rounding of a bin
    edge, so that only a real error of 0.5 / bins counts); with `--round_trip_dtypes
    float32,float64` the round trips are measured again in a float64 copy of the model
    (`Flow.astype`), columns suffixed "(float64)";
  * held-out bits/dim per image: mean, median, worst image and how many images exceed 3x the
    run's median; those images are scored again by a float64 copy of the model (same weights,
    same noise): when float64 agrees with float32 the high score is the model's density, not
    a numerical blow-up.
Writes docs/results/<--name>.{json,md}.

  python benchmarks/numerics/robustness.py runs/peer_static runs/peer_bounded \
      --name robustness_peer
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
from lcflow_tf import flows  # pylint: disable=g-import-not-at-top

TEMPERATURES = (0.5, 0.7, 0.85, 1.0)
BATCH = 500
SAMPLE_SEED = 4321
ROUND_TRIP_COLUMNS = ("round trip images", "round trip max error", "round trips > max_error",
                      "round trips losing a pixel", "round trips non-finite")
DTYPES = ("float32", "float64")


def sample_stats(flow, num_samples, temperature):
  """(non-finite samples, largest |x| of the finite ones) over `num_samples` samples."""
  decode = tf.function(flow.decode)
  bad, largest = 0, 0.0
  for i, start in enumerate(range(0, num_samples, BATCH)):
    n = min(BATCH, num_samples - start)
    z = tf.random.stateless_normal((n,) + flow.image_shape, seed=[SAMPLE_SEED, i],
                                   dtype=flow.dtype) * temperature
    x = decode(z).numpy().reshape(n, -1)
    finite = np.all(np.isfinite(x), axis=1)
    bad += int(np.sum(~finite))
    if finite.any():
      largest = max(largest, float(np.abs(x[finite]).max()))
  return bad, largest


def round_trip_stats(flow, images, num_bins, max_error):
  """Round trips of every held-out image: see the module docstring."""
  encode, decode = tf.function(flow.encode), tf.function(flow.decode)
  worst, over, lost, nonfinite, count = 0.0, 0, 0, 0, 0
  for x in data.make_eval_pipeline(images, BATCH, num_bins, ablation.EVAL_SEED):
    x_back = decode(encode(x)).numpy().reshape(x.shape[0], -1).astype(np.float64)
    pixels = np.floor(x.numpy().reshape(x.shape[0], -1) * num_bins)
    centres = tf.reshape(tf.constant((pixels + 0.5) / num_bins, dtype=x.dtype), x.shape)
    centres_back = decode(encode(centres)).numpy().reshape(x.shape[0], -1)
    x = x.numpy().reshape(x.shape[0], -1).astype(np.float64)
    finite = np.all(np.isfinite(x_back), axis=1)
    error = np.where(finite[:, None], np.abs(x_back - x), np.inf).max(axis=1)
    pixels_kept = np.all(np.floor(np.nan_to_num(centres_back, nan=-1.0) * num_bins) == pixels,
                         axis=1)
    worst = max(worst, float(error[finite].max()) if finite.any() else worst)
    over += int(np.sum(error > max_error))
    lost += int(np.sum(~pixels_kept))
    nonfinite += int(np.sum(~finite))
    count += x.shape[0]
  return dict(zip(ROUND_TRIP_COLUMNS, (count, worst, over, lost, nonfinite)))


def float64_bits_per_dim(flow, images, num_bins, indices):
  """Bits/dim of the held-out images at `indices` under a float64 copy of `flow`."""
  pipeline = data.make_eval_pipeline(images, BATCH, num_bins, ablation.EVAL_SEED)
  x = tf.concat(list(pipeline), 0).numpy()[np.asarray(indices, dtype=np.int64)]
  copy = flow.astype("float64")
  return flows.log_prob_to_bits_per_dim(copy.log_prob(tf.constant(x, tf.float64)),
                                        flow.image_shape, num_bins).numpy()


def round_trip_columns(dtype):
  """The round-trip columns of `round_trip_stats`, suffixed for a dtype other than float32."""
  suffix = "" if dtype == "float32" else f" ({dtype})"
  return [c + suffix for c in ROUND_TRIP_COLUMNS]


def measure(model_dir, num_samples, max_error, load_kwargs, round_trip_dtypes=("float32",)):
  """One table row for the run in `model_dir`."""
  # Unchecked: non-finite latents are counted here, not refused.
  run = evaluation.load_run(model_dir, validate_args=False, **load_kwargs)
  flow, dataset = run.flow, run.dataset
  row = {"run": os.path.basename(os.path.normpath(model_dir)), "step": run.step}
  for t in TEMPERATURES:
    bad, largest = sample_stats(flow, num_samples, t)
    row[f"non-finite T={t:g}"] = bad
    row[f"max |x| T={t:g}"] = largest
  for dtype in round_trip_dtypes:
    in_dtype = flow if dtype == flow.dtype.name else flow.astype(dtype)
    stats = round_trip_stats(in_dtype, dataset.test(), dataset.num_bins, max_error)
    row.update(zip(round_trip_columns(dtype), (stats[c] for c in ROUND_TRIP_COLUMNS)))
  held_out = ablation.held_out(flow, dataset)
  per_image = held_out["per_image"]
  median = float(np.median(per_image))
  outliers = np.flatnonzero(per_image > 3 * median)
  row.update({"test bpd mean": float(per_image.mean()), "test bpd median": median,
              "worst image bpd": float(per_image.max()), "images > 3x median": len(outliers)})
  if len(outliers):
    in_float64 = float64_bits_per_dim(flow, dataset.test(), dataset.num_bins, outliers)
    row["those images: |float64 - float32| bpd"] = float(
        np.abs(in_float64 - per_image[outliers]).max())
    row["those images (index: bpd)"] = ", ".join(
        f"{i}: {per_image[i]:.1f}" for i in outliers[np.argsort(-per_image[outliers])][:5])
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dirs", nargs="+", help="trained run directories")
  parser.add_argument("--num_samples", type=int, default=10000,
                      help="samples per temperature (>= 1)")
  parser.add_argument("--max_error", type=float, default=1e-3,
                      help="a round trip fails when its largest error exceeds this (> 0)")
  parser.add_argument("--round_trip_dtypes", default="float32",
                      help="comma-separated, from float32, float64: measure the round trips "
                           "in a copy of the model in each dtype (Flow.astype)")
  parser.add_argument("--name", default="robustness", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if args.num_samples < 1:
    parser.error(f"--num_samples must be >= 1, got {args.num_samples}")
  if not args.max_error > 0:
    parser.error(f"--max_error must be > 0, got {args.max_error}")
  dtypes = list(dict.fromkeys(d.strip() for d in args.round_trip_dtypes.split(",") if d.strip()))
  if not dtypes or any(d not in DTYPES for d in dtypes):
    parser.error(f"--round_trip_dtypes must be a comma-separated list from {list(DTYPES)}, "
                 f"got {args.round_trip_dtypes!r}")
  rows = []
  for model_dir in args.model_dirs:
    try:
      rows.append(measure(model_dir, args.num_samples, args.max_error, {}, dtypes))
    except ValueError as e:
      parser.error(str(e))
    print(rows[-1], flush=True)
  columns = (["run", "step"] + [f"non-finite T={t:g}" for t in TEMPERATURES]
             + [f"max |x| T={t:g}" for t in TEMPERATURES]
             + [c for d in dtypes for c in round_trip_columns(d)] + ["test bpd mean",
                "test bpd median", "worst image bpd", "images > 3x median",
                "those images: |float64 - float32| bpd", "those images (index: bpd)"])
  notes = (f"Samples: {args.num_samples} per temperature (latent seed {SAMPLE_SEED}); "
           "`max |x|`: the largest |value| of the finite samples in model space, where the "
           "data lie in [0, 1). Round trips: every held-out image dequantised once (seed "
           f"{ablation.EVAL_SEED}), decode(encode(x)) vs x; it fails above {args.max_error:g} "
           "absolute error; an image loses a pixel when its bin centres (k + 0.5) / bins do not "
           "decode back to k = floor(x * bins) for every pixel. Test bits/dim: the "
           "same noise, one pass (the ablation's protocol).")
  print(results.write(args.name, results.command_line(), rows, columns, notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
