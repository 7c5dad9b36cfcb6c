"""Where a temperature-T sample grows out of the data's range, layer by layer, in a trained run.

Draws `--samples` latents z ~ N(0, T^2) (seed `--seed`) and decodes them with the run's
averaged weights (`lcflow_tf.evaluation.load_run`), recording every layer's output on the way
from the latent to the image. Per layer, in decode order:
  * `median max |output|` and `largest max |output|`: over the samples, of each sample's
    largest |value| after this layer;
  * `median gain`: over the samples, this layer's max |output| divided by the previous
    recorded layer's (the squeezes and permutations only move values; a junction's factored-out
    half enters where the junction's inner levels end, so the row after a junction compares
    different tensors);
and for the decoded samples the share of pixels outside [-1, 2] (data live in [0, 1)) and how
many samples have one. Writes docs/results/<--name>.{md,json}.

  python benchmarks/numerics/sample_anatomy.py runs/peer300 --name sample_anatomy_peer300
"""

import argparse
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from benchmarks.numerics import round_trip_anatomy  # pylint: disable=g-import-not-at-top
from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top

OUTSIDE = (-1.0, 2.0)


def decode_outputs(flow, z):
  """[(layer name, max |output| per sample)] in the order decoding `z` reaches the layers."""
  found = {}

  def record(layer):
    def fn(t, a):
      del a
      if layer.name not in found:  # the first call gives the output on the way to the image
        found[layer.name] = round_trip_anatomy.per_image_max(tf.abs(t))
      return t
    return fn

  with contextlib.ExitStack() as stack:
    for layer in round_trip_anatomy.leaves(flow):
      stack.enter_context(round_trip_anatomy.tapped(layer, record(layer)))
    x = flow.decode(z)
  return list(found.items()), x.numpy()


def anatomy(model_dir, samples, temperature, seed):
  """(table rows, summary dict) of `samples` decoded latents at `temperature`."""
  run = evaluation.load_run(model_dir)
  flow = run.flow
  z = temperature * tf.random.stateless_normal([samples, *flow.image_shape], seed=[seed, 0])
  layers, x = decode_outputs(flow, z)
  rows, previous = [], round_trip_anatomy.per_image_max(tf.abs(z))
  rows.append({"layer": "(latent z)", "median max |output|": float(np.median(previous)),
               "largest max |output|": float(np.max(previous))})
  for name, largest in layers:
    rows.append({"layer": name, "median max |output|": float(np.median(largest)),
                 "largest max |output|": float(np.max(largest)),
                 "median gain": float(np.median(largest / previous))})
    previous = largest
  outside = (x < OUTSIDE[0]) | (x > OUTSIDE[1]) | ~np.isfinite(x)
  summary = {"samples": samples, "temperature": temperature,
             "pixels outside [-1, 2]": float(np.mean(outside)),
             "samples with a pixel outside": int(np.sum(np.any(outside, axis=(1, 2, 3)))),
             "non-finite samples": int(np.sum(~np.all(np.isfinite(x), axis=(1, 2, 3))))}
  return rows, summary


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dir", help="a trained run directory")
  parser.add_argument("--samples", type=int, default=256)
  parser.add_argument("--temperature", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=1000)
  parser.add_argument("--name", default="sample_anatomy", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  if args.samples < 1 or not args.temperature > 0:
    parser.error(f"--samples must be >= 1 and --temperature > 0, got {args.samples} and "
                 f"{args.temperature}")
  if not os.path.isdir(args.model_dir):
    parser.error(f"model_dir {args.model_dir!r} does not exist")
  rows, summary = anatomy(args.model_dir, args.samples, args.temperature, args.seed)
  run_name = os.path.basename(os.path.normpath(args.model_dir))
  notes = (f"Run {run_name}, averaged weights; {args.samples} latents at T = "
           f"{args.temperature:g} (seed {args.seed}); layers in latent -> image order. Decoded "
           f"samples: {100 * summary['pixels outside [-1, 2]']:.3g}% of pixels outside "
           f"[-1, 2], {summary['samples with a pixel outside']} of {args.samples} samples with "
           f"one, {summary['non-finite samples']} non-finite.")
  print(results.write(args.name, results.command_line(), rows,
                      ["layer", "median max |output|", "largest max |output|", "median gain"],
                      notes=notes, results_dir=args.results_dir, details=summary))


if __name__ == "__main__":
  main()
