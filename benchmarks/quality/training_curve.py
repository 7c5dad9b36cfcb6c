"""A long run's training curve: train bits/dim from its logs, test bits/dim of every checkpoint.

  python benchmarks/quality/training_curve.py /work/wt/runs/fashion_mnist_glow \
      --test_images 2000 --name training_curve_fashion_mnist_glow

For the run in MODEL_DIR (written by train.py with --keep_checkpoints large enough to keep
them), reads the train bits/dim that the trainer logged (`train/bits_per_dim` in
MODEL_DIR/train: the mean over each logging interval; when a resumed run logged a step twice,
its last value) and evaluates every kept checkpoint's averaged weights (and raw weights) on
the first --test_images test images with one dequantisation sample (seed 0); checkpoints that
an earlier NAME.json of the same run and --test_images holds are not evaluated again. Writes
docs/results/NAME.{json,md} and the plot docs/figures/NAME.png (both curves against steps,
the bits/dim axis clipped so that loss spikes do not flatten the rest).
"""

import argparse
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks.common import figures  # pylint: disable=g-import-not-at-top
from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top

TAG = "train/bits_per_dim"


def logged_train_curve(model_dir):
  """{step: train bits/dim} from the run's event files (a step logged twice: the value written
  last; the last file may be cut short by a run still writing it)."""
  latest = {}
  for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          step = int(event.step)
          if value.tag == TAG and event.wall_time >= latest.get(step, (-1.0, 0.0))[0]:
            latest[step] = (event.wall_time, float(tf.make_ndarray(value.tensor)))
    except tf.errors.DataLossError:
      pass  # a truncated last record
  return {step: value for step, (_, value) in latest.items()}


def checkpoint_steps(model_dir):
  """The steps of the checkpoints kept in `model_dir`, ascending."""
  steps = []
  for index in glob.glob(os.path.join(model_dir, "ckpt-*.index")):
    match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index))
    if match:
      steps.append(int(match.group(1)))
  return sorted(steps)


def test_curve(model_dir, test_images, done=None):
  """Rows {step, test bits/dim (ema), test bits/dim (raw)} of every kept checkpoint (the rows
  of `done`, {step: row}, are taken as they are)."""
  rows, dataset = [], None
  for step in checkpoint_steps(model_dir):
    if done and step in done:
      rows.append(done[step])
      continue
    row = {"step": step}
    for weights in ("ema", "raw"):
      run = evaluation.load_run(model_dir, os.path.join(model_dir, f"ckpt-{step}"),
                                dataset=dataset, weights=weights)
      dataset = run.dataset
      result = evaluation.held_out_bits_per_dim(
          run.flow, dataset.test().take(test_images), run.num_bins, dequant_samples=1, seed=0)
      row[f"test bits/dim ({weights})"] = result["bits_per_dim"]
    print(row, flush=True)
    rows.append(row)
  return rows


def previous_rows(results_dir, name, model_dir, test_images):
  """{step: test row} of an earlier record NAME.json of the same run and --test_images (a
  long run's curve is extended as it trains; the evaluations are deterministic)."""
  path = os.path.join(results_dir or results.RESULTS_DIR, f"{name}.json")
  if not os.path.isfile(path):
    return {}
  with open(path) as f:
    record = json.load(f)
  details = record.get("details", {})
  if (details.get("model_dir"), details.get("test_images")) != (
      os.path.abspath(model_dir), test_images):
    return {}
  keys = ("step", "test bits/dim (raw)", "test bits/dim (ema)")
  return {r["step"]: {k: r[k] for k in keys} for r in record["rows"]}


def plot(path, train, rows, command, machine):
  """Train and test bits/dim against steps; returns the figure's path."""
  fig, axes = figures.new(1, 1, height=4.2)
  ax = axes[0][0]
  steps = sorted(train)
  ax.plot(steps, [train[s] for s in steps], color=figures.COLORS[0], lw=1,
          label="train (mean of each logging interval, raw weights)")
  for i, weights in enumerate(("raw", "ema")):
    ax.plot([r["step"] for r in rows], [r[f"test bits/dim ({weights})"] for r in rows],
            color=figures.COLORS[i + 1], marker="o", ms=3,
            label=f"test ({weights} weights, {'averaged' if weights == 'ema' else 'trained'})")
  values = [v for v in [train[s] for s in steps] + [
      r[f"test bits/dim ({w})"] for r in rows for w in ("raw", "ema")] if np.isfinite(v)]
  if values:
    low = min(values)
    ax.set_ylim(low - 0.05, min(max(values), low + 1.5))  # spikes go off the top
  ax.set_xlabel("training step")
  ax.set_ylabel("bits/dim")
  ax.legend(loc="upper right")
  footer = (f"{command}\nMachine: {machine['cpu']}, {machine['cores']} cores, "
            f"TensorFlow {machine['tensorflow']}; {machine['date']}. Values above the top edge "
            "are loss spikes (in the table).")
  return figures.save(fig, path, footer)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dir", help="the training run")
  parser.add_argument("--test_images", type=int, default=2000,
                      help="first test images evaluated per checkpoint")
  parser.add_argument("--name", default="training_curve", help="result and figure file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--figures_dir", default=figures.FIGURES_DIR, help="default docs/figures")
  args = parser.parse_args()
  if args.test_images < 1:
    parser.error(f"--test_images must be >= 1, got {args.test_images}.")
  done = previous_rows(args.results_dir, args.name, args.model_dir, args.test_images)
  try:
    rows = test_curve(args.model_dir, args.test_images, done)
  except ValueError as e:
    parser.error(str(e))
  if not rows:
    parser.error(f"{args.model_dir} keeps no checkpoint (ckpt-STEP.index).")
  train = logged_train_curve(args.model_dir)
  for row in rows:
    logged = [s for s in train if s <= row["step"]]
    row["train bits/dim (last logged)"] = train[max(logged)] if logged else float("nan")
  command = results.command_line()
  notes = (f"Test: the first {args.test_images} test images, one dequantisation sample (seed "
           "0), per kept checkpoint; `ema` = the weight averages the run evaluates and ships, "
           "`raw` = the trained weights. Train: the trainer's logged mean over the logging "
           "interval ending at or before the checkpoint's step (raw weights, dequantisation "
           f"noise of training). Logged train values: {len(train)}; above 10 bits/dim: "
           f"{sorted(s for s, v in train.items() if not v < 10)} (loss spikes).")
  print(results.write(args.name, command, rows,
                      ["step", "train bits/dim (last logged)", "test bits/dim (raw)",
                       "test bits/dim (ema)"], notes=notes, results_dir=args.results_dir,
                      details={"model_dir": os.path.abspath(args.model_dir),
                               "test_images": args.test_images,
                               "train_curve": {str(s): train[s] for s in sorted(train)}}))
  print(plot(os.path.join(args.figures_dir, f"{args.name}.png"), train, rows, command,
             results.machine()))


if __name__ == "__main__":
  main()
