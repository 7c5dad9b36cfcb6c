"""Where a training step of our Glow spends its time: the TensorFlow profiler, by model part.

`profile` runs a compiled (not XLA) training step under `tf.profiler.experimental` and sums
the op events of the trace per part of the model and per op family. An op belongs to the part
whose name scope it was created in: the library's walkers run every bijector under a name
scope of its name (`level0/level0_step3_coupling/...`), a coupling's or a prior's Keras
network adds the network's scope, the 1x1 convolution applies W under `apply`, the map
bookkeeping runs under `carried_map`, and `peer_models.Trainer` puts the loss, clipping,
optimizer and weight-average updates under `loss`, `clipping`, `optimizer` and
`weight_average`. A gradient op (`gradient_tape/<forward op>`) counts for the op it
differentiates (the backward column). The bijectors' names and classes come from the model
itself (`bijector.submodules`), so the attribution does not depend on source file names or
on how the model was built.
"""

import collections
import glob
import os
import re
import statistics
import tempfile
import time

import tensorflow as tf

from lcflow_tf import bijectors as lcb

# Rows of the table: (bijector class, part of it) -> label.
_LABELS = {
    (lcb.AffineCoupling, "network"): "coupling networks (Keras conv3x3-conv1x1-conv3x3, ReLU)",
    (lcb.AffineCoupling, None): "coupling: affine map and log-det (sigmoid scale, slicing)",
    (lcb.InvertibleConv1x1, "apply"): "1x1 conv: applying W (matmul over channels)",
    (lcb.InvertibleConv1x1, None): "1x1 conv: W from its LU factors, log|det W| (LU)",
    (lcb.ActNorm, None): "ActNorm",
    (lcb.FactorOut, "network"): "split: learned prior network (Keras conv)",
    (lcb.FactorOut, None): "split: factor-out, prior log-density",
    (lcb.ChannelPermutation, None): "split: channel permutation",
    (lcb.Squeeze, None): "squeeze / unsqueeze",
}
_MAP = "per-element log-det map bookkeeping"
_SCOPES = {"loss": "base log-density and loss", "clipping": "gradient norm and clipping",
           "optimizer": "optimizer (Adam update)", "adam": "optimizer (Adam update)",
           "weight_average": "weight average update"}
_OTHER = "other (step glue, unattributed)"
_GRADIENT = "gradient_tape/"
_DEDUPLICATED = re.compile(r"^(.*)_\d+$")  # TF's suffix for a scope entered twice in a graph

_MATMULS = ("Einsum", "MatMul", "BatchMatMulV2", "BatchMatMulV3")
# Op-type families for the second table (MKL prefixes stripped).
_OP_FAMILIES = [
    ("convolutions (forward and both gradients)", lambda t: "Conv2D" in t),
    ("matmul / einsum", lambda t: t in _MATMULS),
    ("small linear algebra (band part, diag, triangular solve)",
     lambda t: t.startswith("Matrix") or t == "MatrixTriangularSolve"),
    ("data movement (slice, concat, gather, transpose, broadcast, depth/space)",
     lambda t: t in ("StridedSlice", "StridedSliceGrad", "Slice", "ConcatV2", "Split", "SplitV",
                     "GatherV2", "UnsortedSegmentSum", "Transpose", "BroadcastTo", "Tile",
                     "SpaceToDepth", "DepthToSpace", "Reshape", "Pack", "Unpack", "Fill",
                     "ZerosLike", "OnesLike", "Identity", "Pad", "ConcatOffset")),
    ("variable reads and updates", lambda t: "Variable" in t or t.startswith("ResourceApply")
     or t.startswith("Assign")),
    ("elementwise and reductions", lambda t: True),
]


class Attribution:
  """Maps op names to rows of the profile table, from the model's name scopes.

  Args:
    bijector: the model's bijector; its parts' names and classes, and the names of the
      networks they hold, define the scopes.
  """

  def __init__(self, bijector):
    self._bijectors, self._networks = {}, set()
    for part in (bijector,) + tuple(bijector.submodules):
      # tfb.Invert(b) runs b's code under its own scope: it counts as b
      of = part if isinstance(part, lcb.ImageBijector) else getattr(part, "bijector", None)
      kind = next((k for k, _ in _LABELS if isinstance(of, k)), None)
      if kind is not None:
        self._bijectors[part.name] = kind
      for network in getattr(part, "networks", ()):
        self._networks.add(network.name)

  @staticmethod
  def _match(part, names):
    part = part.split("_CONSTRUCTED_AT_")[0]  # TFP's scope of a bijector built in a scope
    if part in names:
      return part
    stripped = _DEDUPLICATED.match(part)
    return stripped.group(1) if stripped and stripped.group(1) in names else None

  def __call__(self, name):
    """(row label, is backward) of an op name."""
    backward = name.startswith(_GRADIENT)
    parts = name[len(_GRADIENT):].split("/") if backward else name.split("/")
    owner = None
    for i in range(len(parts) - 1, -1, -1):  # the innermost bijector scope
      match = self._match(parts[i], self._bijectors)
      if match is not None:
        owner = (self._bijectors[match], i)
        break
    if owner is None:
      return _SCOPES.get(parts[0], _OTHER), backward
    kind, depth = owner
    inner = parts[depth + 1:-1]  # scopes below the bijector's (the last part is the op)
    if "carried_map" in inner:
      return _MAP, backward
    if any(self._match(p, self._networks) for p in inner):
      return _LABELS[(kind, "network")], backward
    if "apply" in inner and (kind, "apply") in _LABELS:
      return _LABELS[(kind, "apply")], backward
    return _LABELS[(kind, None)], backward


def op_events(xspace_path, window_name):
  """(step windows, op events) of the host plane: [(start_ps, end_ps)], [(name, type, s, e)]."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  with open(xspace_path, "rb") as f:
    space.ParseFromString(f.read())
  plane = next(p for p in space.planes if p.name == "/host:CPU")
  windows, ops = [], []
  for line in plane.lines:
    base = line.timestamp_ns * 1000
    for event in line.events:
      name = plane.event_metadata[event.metadata_id].name
      start, end = base + event.offset_ps, base + event.offset_ps + event.duration_ps
      if name == window_name:
        windows.append((start, end))
      elif ":" in name and "::" not in name and line.name.startswith("tf_Compute"):
        op_name, op_type = name.rsplit(":", 1)
        ops.append((op_name, op_type, start, end))
  return sorted(windows), ops


def union_length(intervals):
  """Total length covered by a list of (start, end) intervals."""
  total, current_start, current_end = 0, None, None
  for start, end in sorted(intervals):
    if current_end is None or start > current_end:
      if current_end is not None:
        total += current_end - current_start
      current_start, current_end = start, end
    else:
      current_end = max(current_end, end)
  if current_end is not None:
    total += current_end - current_start
  return total


def _traced(train_step, batches, steps):
  """Runs `steps` steps under the profiler; returns (step windows, op events)."""
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for i in range(steps):
      with tf.profiler.experimental.Trace("profiled_train_step", step_num=i, _r=1):
        train_step(next(batches))[0].numpy()
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if len(paths) != 1:
      raise RuntimeError(f"expected one profiler trace in {logdir}, found {paths}")
    windows, ops = op_events(paths[0], "profiled_train_step")
  if len(windows) != steps:
    raise RuntimeError(f"expected {steps} traced steps, the trace has {len(windows)}")
  return windows, ops


def profile(train_step, bijector, batches, timed_steps, traced_steps):
  """Profiles a warm training step: op time per model part and per op family.

  Args:
    train_step: the compiled (not XLA) step, x -> (loss, ...).
    bijector: the model's bijector (for the attribution).
    batches: iterator of training batches (tensors).
    timed_steps: steps timed without the profiler (after one warm-up step).
    traced_steps: steps traced with the profiler.

  Returns:
    A dict with `rows` (per part, then timing rows), `families` (per op family) and
    `traced_steps`.
  """
  train_step(next(batches))[0].numpy()  # warm
  waits, start = [], time.perf_counter()
  for _ in range(timed_steps):
    t = time.perf_counter()
    x = next(batches)
    waits.append(time.perf_counter() - t)
    train_step(x)[0].numpy()
  untraced_ms = 1000.0 * (time.perf_counter() - start) / timed_steps
  windows, ops = _traced(train_step, batches, traced_steps)

  attribution = Attribution(bijector)
  per_part = collections.defaultdict(lambda: [0, 0])
  per_family = collections.Counter()
  intervals = []
  for name, op_type, start, end in ops:
    if not any(w0 <= start < w1 for w0, w1 in windows):
      continue
    label, backward = attribution(name)
    per_part[label][int(backward)] += end - start
    op_type = op_type.replace("_MklNative", "").replace("_Mkl", "").replace("_Fused", "")
    family = next(label for label, match in _OP_FAMILIES if match(op_type))
    per_family[family] += end - start
    intervals.append((start, end))
  ms = lambda ps: ps / 1e9 / traced_steps  # picoseconds over all traced steps -> ms/step
  op_total = sum(sum(v) for v in per_part.values())
  traced_ms = ms(sum(w1 - w0 for w0, w1 in windows))
  rows = []
  for label in sorted(per_part, key=lambda c: -sum(per_part[c])):
    fwd, bwd = per_part[label]
    rows.append({"part": label, "forward ms/step": ms(fwd), "backward ms/step": ms(bwd),
                 "total ms/step": ms(fwd + bwd), "% of op time": 100.0 * (fwd + bwd) / op_total})
  rows += [
      {"part": "= sum of op time (executor threads can overlap)", "total ms/step": ms(op_total),
       "% of op time": 100.0},
      {"part": "wall time per step, traced", "total ms/step": traced_ms},
      {"part": "wall time per step, not traced", "total ms/step": untraced_ms},
      {"part": "no op running: Python, tf.function call, executor gaps",
       "total ms/step": max(traced_ms - ms(union_length(intervals)), 0.0)},
      {"part": "reading the next batch from the exported stream",
       "total ms/step": 1000.0 * statistics.mean(waits)},
  ]
  families = [{"op family": label, "ms/step": ms(per_family[label]),
               "% of op time": 100.0 * per_family[label] / op_total}
              for label, _ in _OP_FAMILIES]
  return {"rows": rows, "families": families, "traced_steps": traced_steps}
