"""Where an image's round trip loses precision, layer by layer, in a trained run.

For each chosen held-out image (dequantised with the ablation's noise, one pass, seed 1234)
and each layer of the flow in image -> latent order, this reports
  * `max |output|`: the largest |value| of the layer's output on the way to the latent
    (float32 model, as trained);
  * `decode gain`: for an affine coupling, the largest factor exp(-log scale) by which its
    decode step multiplies an element of this image (at most exp(max_log_scale), the soft
    bound); empty for other layers;
  * `error if rounded here`: in a float64 copy of the model (`Flow.astype`), only this layer's
    encode output is rounded to float32 and everything else runs in float64; the largest
    |decode(encode(x)) - x| that this one rounding causes. It says how strongly the layers
    between this one and the image amplify float32's rounding on the way back.
and, per image, the round trip's largest error in float32, in the float64 copy, and when the
latent is computed in float32 and decoded in float64 (whether decoding alone in float64 would
be enough). An error of
0.5 / bins (0.002 for 256 bins) can move a uint8 pixel. Writes docs/results/<--name>.{json,md}.

  python benchmarks/numerics/round_trip_anatomy.py runs/peer_size_static --images 6573,3052
"""

import argparse
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from benchmarks.common import results  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top
from lcflow_tf import bijectors as lcb  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top

# The walkers of `lcflow_tf.bijectors.base` reach a layer through its fused hooks, and a layer
# inside `tfb.Invert` (the unsqueezes) through its `_forward`; TFP's own calls use `_forward` /
# `_inverse`. All four are tapped.
HOOKS = ("_inverse_and_log_det_map", "_forward_and_log_det", "_forward", "_inverse")


@contextlib.contextmanager
def tapped(layer, fn):
  """While inside, every output `t` of `layer` (either direction) is replaced by `fn(t, a)`.

  `a` is the layer's per-element inverse log-det map when the call returned one (the fused
  inverse hook), else None. A layer's hooks may call one another, so `fn` sees the same
  output more than once and must be idempotent (recording the first call, or rounding).
  Instance attributes shadow the hooks while inside and are removed on exit.
  """
  shadowed = []
  try:
    for hook in HOOKS:
      original = getattr(layer, hook)

      def wrapper(t, *args, original=original, hook=hook, **kwargs):
        out = original(t, *args, **kwargs)
        if isinstance(out, tuple):
          return (fn(out[0], out[1] if hook == HOOKS[0] else None),) + tuple(out[1:])
        return fn(out, None)
      setattr(layer, hook, wrapper)
      shadowed.append(hook)
    yield
  finally:
    for hook in shadowed:
      layer.__dict__.pop(hook, None)


def leaves(flow):
  """The flow's elementary layers (the junctions' parts, not the junctions)."""
  return [m for m in flow.bijector.submodules
          if isinstance(m, lcb.ImageBijector) and not isinstance(m, lcb.FactorOut)]


def per_image_max(t):
  """The largest value of each image of `t` [N, H, W, C], as NumPy [N]."""
  return tf.reduce_max(tf.reshape(t, [t.shape[0], -1]), 1).numpy()


def encode_outputs(flow, x):
  """{layer name: [max |output| per image, largest decode gain per image or None]}.

  The names come in the order encoding `x` reaches the layers.
  """
  found = {}

  def record(layer):
    def fn(t, a):
      if layer.name not in found:  # the first call gives the output on the way to the latent
        found[layer.name] = [per_image_max(tf.abs(t)), None]
      if isinstance(layer, lcb.AffineCoupling) and a is not None and found[layer.name][1] is None:
        found[layer.name][1] = per_image_max(tf.exp(-a))
      return t
    return fn

  with contextlib.ExitStack() as stack:
    for layer in leaves(flow):
      stack.enter_context(tapped(layer, record(layer)))
    flow.encode(x)
  return found


def rounded_at(copy, layer, x64):
  """Round-trip error per image when only `layer`'s encode output is rounded to float32."""
  with tapped(layer, lambda t, a: tf.cast(tf.cast(t, tf.float32), t.dtype)):
    z = copy.encode(x64)
  return per_image_max(tf.abs(copy.decode(z) - x64))


def anatomy(model_dir, indices):
  """Table rows: per image, its summary row, then one row per layer."""
  run = evaluation.load_run(model_dir)
  flow, dataset = run.flow, run.dataset
  images = tf.concat(list(data.make_eval_pipeline(dataset.test(), 500, dataset.num_bins,
                                                  ablation.EVAL_SEED)), 0)
  if max(indices) >= images.shape[0]:
    raise ValueError(f"--images must be test-set indices below {images.shape[0]}, got "
                     f"{max(indices)}.")
  x = tf.gather(images, indices)
  copy = flow.astype("float64")
  x64 = tf.cast(x, tf.float64)
  outputs = encode_outputs(flow, x)  # in encode order
  z32 = flow.encode(x)
  in32 = per_image_max(tf.abs(tf.cast(flow.decode(z32), tf.float64) - x64))
  in64 = per_image_max(tf.abs(copy.decode(copy.encode(x64)) - x64))
  mixed = per_image_max(tf.abs(copy.decode(tf.cast(z32, tf.float64)) - x64))
  copy_layers = {l.name: l for l in leaves(copy)}
  rounded = {name: rounded_at(copy, copy_layers[name], x64) for name in outputs}
  rows = []
  for i, index in enumerate(indices):
    rows.append({"image": index, "layer": "(whole round trip)",
                 "float32 round trip error": float(in32[i]),
                 "float64 round trip error": float(in64[i]),
                 "float32 encode, float64 decode error": float(mixed[i])})
    for name, (largest, gain) in outputs.items():
      row = {"image": index, "layer": name, "max |output|": float(largest[i]),
             "error if rounded here": float(rounded[name][i])}
      if gain is not None:
        row["decode gain"] = float(gain[i])
      rows.append(row)
  return os.path.basename(os.path.normpath(model_dir)), rows


def parse_indices(text, parser):
  try:
    indices = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    indices = []
  if not indices or min(indices) < 0:
    parser.error(f"--images must be a comma-separated list of test-set indices >= 0, got "
                 f"{text!r}")
  return indices


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("model_dir", help="a trained run directory")
  parser.add_argument("--images", required=True,
                      help="comma-separated test-set indices (e.g. the worst round trips of "
                           "benchmarks/numerics/robustness.py)")
  parser.add_argument("--name", default="round_trip_anatomy", help="result file name")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  args = parser.parse_args()
  indices = parse_indices(args.images, parser)
  try:
    run_name, rows = anatomy(args.model_dir, indices)
  except ValueError as e:
    parser.error(str(e))
  columns = ["image", "layer", "max |output|", "decode gain", "error if rounded here",
             "float32 round trip error", "float64 round trip error",
             "float32 encode, float64 decode error"]
  notes = (f"Run {run_name}. Layers in image -> latent order; see the script's docstring "
           "for the columns. Images dequantised with seed "
           f"{ablation.EVAL_SEED} (the ablation's held-out protocol).")
  print(results.write(args.name, results.command_line(), rows, columns, notes=notes,
                      results_dir=args.results_dir))


if __name__ == "__main__":
  main()
