"""What the peer benchmark's models share: the data they see, the recipe, the turns.

The models of benchmarks/peers/peer_glow.py (ours and TFP's in TensorFlow workers, normflows' in a
PyTorch worker of its own venv) train on *exactly* the batches our model would get from
`data.make_train_pipeline`: the parent exports that stream once to a directory, and every
worker reads it from there.

Stream directory (written by `export_stream`, read by `StreamReader` and `load_test`):
  train.npy  float32 [steps, batch, H, W, C]: batch i of make_train_pipeline(seed), i.e.
             x = (k + u) / bins in [0, 1) exactly as our model receives it;
  test.npy   float32 [N, H, W, C]: the test split with one dequantisation pass
             (make_eval_pipeline, eval_seed), as our model is evaluated on;
  meta.json  dataset, image_shape, num_bins, seeds, and checksums of every batch.

Checksums: `checksum` is the exact (math.fsum) float64 sum of an array, the same in any
process; every worker reports it for the first and last batch of each turn.

A `Recipe` (optimizer, learning-rate schedule, clipping, weight averaging) travels to every
worker as JSON; `learning_rate` and `ema_decay` are its formulas without TensorFlow (the
TensorFlow workers use the library's `WarmupDecay` and `WeightAverage`, which they equal).

This module imports no TensorFlow at load time (the PyTorch worker imports it);
`export_stream` imports it when called.
"""

import dataclasses
import json
import math
import os
import statistics

import numpy as np

SCHEDULES = ("constant", "cosine", "linear")  # lcflow_tf.schedules.SCHEDULES
OPTIMIZERS = ("adam", "adamax")
TEST_FIRST_IMAGES = 2000  # the anchor's evaluation subset


# ------------------------------------------------------------------------- the recipe


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a model is trained: optimizer, learning-rate schedule, clipping, weight averaging.

  Plain values (JSON: `dataclasses.asdict` / `Recipe(**d)`), so that every worker, TensorFlow
  or PyTorch, gets the same recipe. Formulas: `learning_rate` and `ema_decay` below.

  Attributes:
    optimizer: `"adam"` (epsilon 1e-7, Keras' default) or `"adamax"`.
    learning_rate: the peak learning rate.
    weight_decay: L2 weight decay of the optimizer (PyTorch's `weight_decay`; 0: none).
    lr_warmup: steps of linear warm-up (0: none).
    lr_schedule: after the warm-up, one of `SCHEDULES`.
    lr_min_ratio: floor of the decaying schedules as a fraction of the peak, in [0, 1).
    ema_decay: decay of the weight average evaluated after training (0: no averaging).
    grad_clip_norm: clip the gradients to this global norm (None: no clipping).
    skip_nonfinite: skip an update whose loss is not finite (normflows' example does).

  Raises:
    ValueError: for a value outside the ranges above (the message names it).
  """
  optimizer: str = "adam"
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  lr_warmup: int = 200
  lr_schedule: str = "constant"
  lr_min_ratio: float = 0.01
  ema_decay: float = 0.0
  grad_clip_norm: float | None = None
  skip_nonfinite: bool = False

  def __post_init__(self):
    checks = (
        ("optimizer", self.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        ("learning_rate", _finite(self.learning_rate) and self.learning_rate > 0, "> 0"),
        ("weight_decay", _finite(self.weight_decay) and self.weight_decay >= 0, ">= 0"),
        ("lr_warmup", isinstance(self.lr_warmup, int) and not isinstance(self.lr_warmup, bool)
         and self.lr_warmup >= 0, "an int >= 0"),
        ("lr_schedule", self.lr_schedule in SCHEDULES, f"one of {SCHEDULES}"),
        ("lr_min_ratio", _finite(self.lr_min_ratio) and 0 <= self.lr_min_ratio < 1,
         "in [0, 1)"),
        ("ema_decay", _finite(self.ema_decay) and 0 <= self.ema_decay < 1,
         "in [0, 1) (0: no averaging)"),
        ("grad_clip_norm", self.grad_clip_norm is None or (
            _finite(self.grad_clip_norm) and self.grad_clip_norm > 0), "None or a number > 0"),
        ("skip_nonfinite", isinstance(self.skip_nonfinite, bool), "True or False"))
    for name, ok, allowed in checks:
      if not ok:
        raise ValueError(f"Recipe: {name} must be {allowed}, got {getattr(self, name)!r}.")

  def describe(self, steps):
    """One line of text, e.g. `Adam 0.001, 200-step linear warm-up, cosine decay to ...`."""
    optimizer = "Adam (epsilon 1e-7)" if self.optimizer == "adam" else "Adamax"
    decay = {"constant": ", then constant",
             "cosine": f", cosine decay to {self.lr_min_ratio:g}x at step {steps}",
             "linear": f", linear decay to {self.lr_min_ratio:g}x at step {steps}"}
    return (f"{optimizer} {self.learning_rate:g}"
            + (f", weight decay {self.weight_decay:g}" if self.weight_decay else "")
            + (f", {self.lr_warmup}-step linear warm-up" if self.lr_warmup else ", no warm-up")
            + decay[self.lr_schedule]
            + (f", gradients clipped to global norm {self.grad_clip_norm:g}"
               if self.grad_clip_norm is not None else ", no gradient clipping")
            + (f", weight average (decay {self.ema_decay:g}) evaluated" if self.ema_decay
               else ", no weight averaging")
            + (", steps with a non-finite loss skipped" if self.skip_nonfinite else ""))


def _finite(value):
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def learning_rate(step, rate, warmup_steps, schedule="constant", total_steps=None,
                  min_ratio=0.0):
  """The learning rate of update `step` (0-based).

  The formula of `lcflow_tf.schedules.WarmupDecay` (which the TensorFlow models' optimizer
  uses, with the update's index as its step and progress), written without TensorFlow for
  the torch worker:

      warm = min(1, (step + 1) / max(warmup_steps, 1))
      p    = clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0, 1)
      rate * warm * decay(p),  decay = 1 (constant), r + (1 - r)(1 + cos(pi p))/2 (cosine),
                                       r + (1 - r)(1 - p) (linear),  r = min_ratio

  so a decaying rate reaches the floor `rate * min_ratio` at `step = total_steps` (the
  update after the last).

  Args:
    step: index of the update, >= 0.
    rate: peak learning rate, > 0.
    warmup_steps: length of the linear warm-up, >= 0 (0: none).
    schedule: one of `SCHEDULES`.
    total_steps: number of updates of the run (decaying schedules only), >= 1.
    min_ratio: floor of the decay as a fraction of `rate`, in [0, 1].

  Returns:
    The learning rate, a float.

  Raises:
    ValueError: for an unknown schedule or arguments outside the ranges above.
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"learning_rate: schedule must be one of {SCHEDULES}, got {schedule!r}.")
  if not rate > 0 or warmup_steps < 0:
    raise ValueError(f"learning_rate: need rate > 0 and warmup_steps >= 0, got rate={rate!r}, "
                     f"warmup_steps={warmup_steps!r}.")
  value = rate * min(1.0, (step + 1) / max(warmup_steps, 1))
  if schedule == "constant":
    return value
  if total_steps is None or total_steps < 1 or not 0.0 <= min_ratio <= 1.0:
    raise ValueError(f"learning_rate: the {schedule} schedule needs total_steps >= 1 and "
                     f"min_ratio in [0, 1], got total_steps={total_steps!r}, "
                     f"min_ratio={min_ratio!r}.")
  p = min(1.0, max(0.0, (step - warmup_steps) / max(total_steps - warmup_steps, 1)))
  fraction = 0.5 * (1.0 + math.cos(math.pi * p)) if schedule == "cosine" else 1.0 - p
  return value * (min_ratio + (1.0 - min_ratio) * fraction)


def ema_decay(decay, updates):
  """Decay of the weight average at an update: `min(decay, (1 + n) / (10 + n))`.

  `n = updates` is the number of updates before this one, so the average (which starts at the
  weights before training) follows the early weights closely and settles to `decay`
  (`lcflow_tf.averaging.WeightAverage`'s rule).
  """
  return min(decay, (1.0 + updates) / (10.0 + updates))


def bits_per_dim(log_prob, dims, num_bins):
  """`-(log p(x) - D log bins) / (D log 2)` (float64) for densities over x in [0, 1)^D.

  The formula of `lcflow_tf.flows.log_prob_to_bits_per_dim`, without importing TensorFlow.
  """
  log_prob = np.asarray(log_prob, np.float64)
  return -(log_prob - dims * math.log(num_bins)) / (dims * math.log(2.0))


# Issue 13's round-trip target: max |decode(encode(x)) - x| per image <= 1e-3.
ROUND_TRIP_TOLERANCE = 1e-3


# Pixels of a temperature-1 sample outside this range count as "far outside the data" ([0, 1)).
SAMPLE_RANGE = (-1.0, 2.0)


def round_trip_summary(test, drawn, errors_of):
  """Summary of encode -> decode errors: per-image max errors `test` (NaN: not finite) and samples.

  Args:
    test: per-image max errors of the test images (NaN where the round trip is not finite).
    drawn: the samples [N, H, W, C].
    errors_of: function images -> per-image max errors, applied to the finite samples.
  """
  test_finite = np.isfinite(test)
  finite = np.all(np.isfinite(drawn), axis=(1, 2, 3))
  sampled = errors_of(drawn[finite])
  ok = np.isfinite(sampled)
  values = drawn[finite]
  return {"test_max": float(np.max(test[test_finite], initial=0.0)),
          "test_mean": float(np.mean(test[test_finite])) if test_finite.any() else None,
          "n_test": len(test), "test_nonfinite": int(np.sum(~test_finite)),
          "test_over_tolerance": int(np.sum(test[test_finite] > ROUND_TRIP_TOLERANCE)),
          "samples_over_tolerance": int(np.sum(sampled[ok] > ROUND_TRIP_TOLERANCE)),
          "n_samples": len(finite), "samples_nonfinite": int(np.sum(~finite)),
          "samples_roundtrip_nonfinite": int(np.sum(~ok)),
          "samples_max": float(np.max(sampled[ok], initial=0.0)),
          "samples_mean": float(np.mean(sampled[ok])) if ok.any() else None,
          "samples_range": ([float(values.min()), float(values.max())] if len(values)
                            else None),
          # share of the finite samples' pixels outside [-1, 2] (data live in [0, 1))
          "samples_outside_share": (float(np.mean((values < SAMPLE_RANGE[0]) |
                                                  (values > SAMPLE_RANGE[1])))
                                    if len(values) else None)}


def checksum(array):
  """Exact float64 sum of the array's values (`math.fsum`): equal arrays, equal checksums."""
  return math.fsum(np.asarray(array, np.float64).ravel().tolist())


# ------------------------------------------------------------------------- the stream


def export_stream(directory, dataset_name, batch_size, steps, seed, eval_seed,
                  eval_images=None, eval_batch=256):
  """Writes our model's training stream and test set into `directory` (see the module doc).

  The training batches are those of `data.make_train_pipeline(dataset.train(), batch_size,
  num_bins, seed)`, the test images those of `data.make_eval_pipeline(test, eval_batch,
  num_bins, eval_seed)`, i.e. what our model would train and be evaluated on.

  Args:
    directory: an existing, empty directory.
    dataset_name: `data.DATASETS` name.
    batch_size: images per training batch.
    steps: number of training batches to write.
    seed: seed of the training stream.
    eval_seed: seed of the test set's dequantisation noise.
    eval_images: the first this many test images (None: all).
    eval_batch: batch size of the test pipeline (the noise does not depend on it).

  Returns:
    The metadata written to meta.json (a dict).
  """
  from lcflow_tf import data as lf_data  # pylint: disable=g-import-not-at-top

  dataset = lf_data.load_dataset(dataset_name)
  shape = (steps, batch_size) + tuple(dataset.image_shape)
  train = lf_data.make_train_pipeline(dataset.train(), batch_size, dataset.num_bins, seed=seed)
  sums = []
  with open(os.path.join(directory, "train.npy"), "wb") as f:
    np.lib.format.write_array_header_2_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
            "fortran_order": False, "shape": shape})
    for x in train.take(steps):
      x = x.numpy()
      sums.append(checksum(x))
      f.write(np.ascontiguousarray(x, np.float32).tobytes())
  if len(sums) != steps:
    raise RuntimeError(f"export_stream: the pipeline gave {len(sums)} of {steps} batches.")

  test = dataset.test()
  if eval_images is not None:
    test = test.take(eval_images)
  test = np.concatenate([x.numpy() for x in lf_data.make_eval_pipeline(
      test, eval_batch, dataset.num_bins, seed=eval_seed)])
  np.save(os.path.join(directory, "test.npy"), test)
  meta = {"dataset": dataset_name, "image_shape": list(dataset.image_shape),
          "num_bins": dataset.num_bins, "batch_size": batch_size, "steps": steps, "seed": seed,
          "eval_seed": eval_seed, "test_images": len(test), "checksums": sums,
          "test_checksum": checksum(test)}
  with open(os.path.join(directory, "meta.json"), "w") as f:
    json.dump(meta, f)
  return meta


def read_meta(directory):
  with open(os.path.join(directory, "meta.json")) as f:
    return json.load(f)


class StreamReader:
  """Reads batch i of an exported train.npy with one positioned read (no memory map).

  A memory map would count every page read so far in the reader's resident memory; a
  positioned read keeps only the current batch.
  """

  def __init__(self, directory):
    path = os.path.join(directory, "train.npy")
    with open(path, "rb") as f:
      version = np.lib.format.read_magic(f)
      read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                     else np.lib.format.read_array_header_2_0)
      shape, fortran, dtype = read_header(f)
      self._offset = f.tell()
    if fortran or dtype != np.float32 or len(shape) != 5:
      raise ValueError(f"StreamReader: {path} must hold float32 [steps, batch, H, W, C] in C "
                       f"order, got {dtype} {shape} (fortran_order={fortran}).")
    self.shape = shape
    self._batch_bytes = int(np.prod(shape[1:])) * 4
    self._fd = os.open(path, os.O_RDONLY)

  def __len__(self):
    return self.shape[0]

  def batch(self, i):
    """float32 [batch, H, W, C] of step i (0-based)."""
    if not 0 <= i < self.shape[0]:
      raise IndexError(f"StreamReader: batch {i} of a stream of {self.shape[0]} batches.")
    raw = os.pread(self._fd, self._batch_bytes, self._offset + i * self._batch_bytes)
    return np.frombuffer(raw, np.float32).reshape(self.shape[1:])

  def close(self):
    os.close(self._fd)


def load_test(directory):
  """float32 [N, H, W, C]: the exported test images."""
  return np.load(os.path.join(directory, "test.npy"))


# ------------------------------------------------------------------------- turns


def chunk_plan(steps, warmup_steps, chunk_steps):
  """Training turns: `warmup_steps` first (not timed), then turns of `chunk_steps`."""
  chunks = [warmup_steps]
  left = steps - warmup_steps
  while left > 0:
    chunks.append(min(chunk_steps, left))
    left -= chunks[-1]
  return chunks


def chunk_bounds(chunks):
  """(first, last) 0-based step of each turn: the batches whose checksums workers report."""
  bounds, start = [], 0
  for n in chunks:
    bounds.append((start, start + n - 1))
    start += n
  return bounds


def alternate_training(workers, chunks, batch_size, total_steps):
  """Trains the `workers` (name -> procs.Worker) in turns; the first to go alternates.

  Each worker answers `train(n)` with at least `seconds` and `losses`.

  Returns:
    name -> list of the answers, one per turn.
  """
  names = list(workers)
  answers = {name: [] for name in names}
  done = 0
  for i, n in enumerate(chunks):
    done += n
    for name in (names if i % 2 == 0 else names[::-1]):
      answer = workers[name].request("train", n=n)
      answers[name].append(answer)
      print(f"[{name}] steps {done}/{total_steps}: {n * batch_size / answer['seconds']:.1f} "
            f"images/s, loss {answer['losses'][-1]:.1f}", flush=True)
  return answers


def median_rate(answers, count):
  """`count` items over the median of all timed calls of the answers."""
  return count / statistics.median(t for a in answers for t in a["seconds"])


def training_rate(turns, batch):
  """Training images/s over alternating turns, the first (warm-up) turn not counted."""
  timed = turns[1:]
  return batch * sum(len(t["losses"]) for t in timed) / sum(t["seconds"] for t in timed)
