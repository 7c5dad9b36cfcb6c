"""Our Glow against TFP's own `tfb.Glow` at matched architecture, on the same data stream.

Both models: L levels of K steps (ActNorm, LU 1x1 conv, affine coupling with a
conv3x3-ReLU-conv1x1-ReLU-zero-conv3x3 conditioner of the same width, sigmoid(raw + 2) scale),
a learned conditional prior at each split, images x = (k + u) / bins in [0, 1) from
`data.make_train_pipeline` with the same seed, Keras Adam with a linear learning-rate
warm-up, compiled (`tf.function`) training steps. TFP's Glow has no fixed input range (its
ActNorm initialises itself from the first batch), so it gets the same x with no affine map
and no log-det correction; both report bits/dim = -(log p(x) - D log bins) / (D log 2).

Each model lives in its own worker process (peak memory is its own max RSS); the parent
drives them in turn: training in chunks of steps (the first `--warmup_steps`, which include
tracing, are not timed), then log_prob, sampling and the test-set bits/dim. Last, once its
peak memory is read, our worker profiles its training step with the TensorFlow profiler. Writes
docs/results/peer_tfp_glow{suffix}.{json,md} and profile_train_step{suffix}.{json,md}, where
suffix is "", "_quick" or "_smoke", plus "_jit" with --jit.

  python benchmarks/peer_tfp_glow.py          # Fashion-MNIST, L=2 K=8 w128, batch 64, 2000 steps
  python benchmarks/peer_tfp_glow.py --quick  # 200 steps, a few minutes on 2 cores
  python benchmarks/peer_tfp_glow.py --smoke  # 8x8 digits, tiny models, a few steps (the test)
"""

import argparse
import collections
import dataclasses
import glob
import math
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

import lcflow_tf as lf
from benchmarks import harness
from benchmarks import results
from lcflow_tf import data as lf_data
from lcflow_tf import flows as lf_flows
from lcflow_tf import schedules

SCRIPT = os.path.abspath(__file__)
MODELS = ("ours", "tfp")

# Settings that differ between the full run and --quick / --smoke; flags override them.
MODES = {
    "full": dict(dataset="fashion_mnist", steps=2000, levels=2, steps_per_level=8, width=128,
                 batch=64, chunk_steps=100, warmup_steps=20, eval_images=None, rounds=5,
                 repeats=5, log_prob_batch=256, sample_count=64, pipeline_batches=300,
                 sample_batches=4,
                 profile_steps=(20, 5)),
    "quick": dict(dataset="fashion_mnist", steps=200, levels=2, steps_per_level=8, width=128,
                  batch=64, chunk_steps=45, warmup_steps=20, eval_images=None, rounds=3,
                  repeats=3, log_prob_batch=256, sample_count=64, pipeline_batches=100,
                  sample_batches=1,
                  profile_steps=(10, 3)),
    "smoke": dict(dataset="digits", steps=4, levels=2, steps_per_level=1, width=8, batch=8,
                  chunk_steps=1, warmup_steps=2, eval_images=None, rounds=1, repeats=2,
                  log_prob_batch=16, sample_count=4, pipeline_batches=3, sample_batches=1,
                  profile_steps=(2, 2)),
}
FIRST_TEST_IMAGES = 2000  # the anchor's evaluation subset
LOSS_WINDOW = 50          # final train loss: mean over the last this many steps
EVAL_BATCH = 256


@dataclasses.dataclass(frozen=True)
class Config:
  mode: str
  dataset: str
  steps: int
  levels: int
  steps_per_level: int
  width: int
  batch: int
  chunk_steps: int
  warmup_steps: int
  eval_images: int | None
  rounds: int
  repeats: int
  log_prob_batch: int
  sample_count: int
  pipeline_batches: int
  sample_batches: int      # temperature-1 samples for the reconstruction error, in EVAL_BATCHes
  profile_steps: tuple     # (steps timed without, with the profiler)
  learning_rate: float
  lr_warmup: int
  seed: int
  eval_seed: int
  jit: bool
  grad_clip_norm: float | None


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true", help="200 steps (a few minutes)")
  mode.add_argument("--smoke", action="store_true",
                    help="tiny models on 8x8 digits, a few steps (seconds; for the tests)")
  parser.add_argument("--steps", type=int, help="training steps of each model (full: 2000)")
  parser.add_argument("--dataset", choices=("fashion_mnist", "digits"),
                      help="data (full/quick: fashion_mnist; smoke: digits)")
  parser.add_argument("--levels", type=int, help="L, levels (default 2)")
  parser.add_argument("--steps_per_level", type=int, help="K, flow steps per level (default 8)")
  parser.add_argument("--width", type=int, help="hidden channels of the couplings (default 128)")
  parser.add_argument("--batch", type=int, help="training batch size (default 64)")
  parser.add_argument("--chunk_steps", type=int,
                      help="training steps per turn when alternating the two models")
  parser.add_argument("--warmup_steps", type=int,
                      help="first steps (with tracing) left out of the training throughput")
  parser.add_argument("--eval_images", type=int,
                      help="test images for bits/dim (default: the whole test split)")
  parser.add_argument("--learning_rate", type=float, default=1e-3, help="Adam learning rate")
  parser.add_argument("--lr_warmup", type=int, default=200,
                      help="steps of linear learning-rate warm-up")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the data stream and of both models' initialisation")
  parser.add_argument("--eval_seed", type=int, default=1234,
                      help="seed of the test set's dequantisation noise")
  parser.add_argument("--grad_clip_norm", type=float, default=None,
                      help="clip both models' gradients to this global norm (default: none); "
                           "adds _clip<value> to the result names")
  parser.add_argument("--jit", action="store_true",
                      help="XLA-compile our training step, log_prob and sampling (not TFP's)")
  parser.add_argument("--results_dir", default=results.RESULTS_DIR,
                      help="where the JSON and Markdown results go (default docs/results)")
  parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  mode_name = "smoke" if args.smoke else "quick" if args.quick else "full"
  settings = dict(MODES[mode_name])
  for key in ("steps", "dataset", "levels", "steps_per_level", "width", "batch", "chunk_steps",
              "warmup_steps", "eval_images"):
    if getattr(args, key) is not None:
      settings[key] = getattr(args, key)
  for key in ("steps", "levels", "steps_per_level", "width", "batch", "chunk_steps",
              "warmup_steps", "lr_warmup"):
    value = settings.get(key, getattr(args, key, None))
    if not isinstance(value, int) or value < 1:
      parser.error(f"--{key} must be an int >= 1, got {value!r}")
  if settings["warmup_steps"] >= settings["steps"]:
    parser.error(f"--warmup_steps ({settings['warmup_steps']}) must be below --steps "
                 f"({settings['steps']}): the training throughput is timed after them")
  if args.grad_clip_norm is not None and not args.grad_clip_norm > 0:
    parser.error(f"--grad_clip_norm must be > 0, got {args.grad_clip_norm!r}")
  if settings["eval_images"] is not None and settings["eval_images"] < 1:
    parser.error(f"--eval_images must be >= 1, got {settings['eval_images']}")
  config = Config(mode=mode_name, learning_rate=args.learning_rate, lr_warmup=args.lr_warmup,
                  seed=args.seed, eval_seed=args.eval_seed, jit=args.jit,
                  grad_clip_norm=args.grad_clip_norm, **settings)
  return args, config


def result_suffix(config):
  return {"full": "", "quick": "_quick", "smoke": "_smoke"}[config.mode] + (
      f"_clip{config.grad_clip_norm:g}" if config.grad_clip_norm is not None else "") + (
      "_jit" if config.jit else "")


# ------------------------------------------------------------------------- models and data


def load_data(config):
  dataset = lf_data.load_dataset(config.dataset)
  train = lf_data.make_train_pipeline(dataset.train(), config.batch, dataset.num_bins,
                                      seed=config.seed)
  return dataset, train


def eval_batches(dataset, config, batch_size):
  test = dataset.test()
  if config.eval_images is not None:
    test = test.take(config.eval_images)
  return lf_data.make_eval_pipeline(test, batch_size, dataset.num_bins, seed=config.eval_seed)


def seed_models(config):
  """Seeds the models' initialisation (Python, NumPy, Keras, TF's global seed).

  Called after `load_data`: the training stream then depends on `config.seed` alone. (With a
  global TF seed of 0 set first, `make_train_pipeline` fails: TF's `get_seed` compares the
  (global, op) seed pair to (0, 0), which is not allowed for the tensor-valued shuffle seed.)
  """
  keras.utils.set_random_seed(config.seed)


@dataclasses.dataclass
class Model:
  log_prob: callable       # float images [N, H, W, C] -> [N] nats
  sample: callable         # python int n -> images
  variables: tuple
  initialize: callable     # first batch -> None (data-dependent init), or None
  encode: callable         # images -> latent (the bijector's inverse)
  decode: callable         # latent -> images (the bijector's forward)


def build_ours(image_shape, config):
  flow = lf.build_flow(image_shape, architecture="glow", levels=config.levels,
                       steps_per_level=config.steps_per_level, hidden_channels=config.width,
                       split="static", seed=config.seed)
  return Model(flow.log_prob, flow.sample, flow.trainable_variables, flow.initialize,
               flow.encode, flow.decode)


def build_tfp(image_shape, config):
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  tfb, tfd = tfp.bijectors, tfp.distributions
  glow = tfb.Glow(output_shape=image_shape, num_glow_blocks=config.levels,
                  num_steps_per_block=config.steps_per_level,
                  coupling_bijector_fn=lambda s: tfb.GlowDefaultNetwork(s,
                                                                        num_hidden=config.width),
                  exit_bijector_fn=tfb.GlowDefaultExitNetwork, seed=config.seed)
  # tfb.Glow maps a vector of H*W*C (its latent) to the image; its ActNorms initialise
  # themselves from the first batch they see (in the first training step).
  latent_shape = glow.inverse_event_shape(image_shape).as_list()
  dist = tfd.TransformedDistribution(tfd.Sample(tfd.Normal(0.0, 1.0), latent_shape), glow)
  return Model(dist.log_prob, dist.sample, tuple(glow.trainable_variables), None,
               glow.inverse, glow.forward)


def make_train_step(model, config, jit):
  optimizer = keras.optimizers.Adam(
      schedules.WarmupDecay(config.learning_rate, config.lr_warmup))
  variables = model.variables

  @tf.function(jit_compile=jit)
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(model.log_prob(x))
    grads = tape.gradient(loss, variables)
    missing = [v.name for v, g in zip(variables, grads) if g is None]
    if missing:
      raise ValueError(f"no gradient reaches {missing}")
    norm = tf.linalg.global_norm(grads)
    if config.grad_clip_norm is not None:
      grads, _ = tf.clip_by_global_norm(grads, config.grad_clip_norm, use_norm=norm)
    optimizer.apply_gradients(zip(grads, variables))
    return loss, norm  # the gradient norm before clipping

  return train_step


def num_parameters(variables):
  return int(sum(np.prod(v.shape) for v in variables))


# ------------------------------------------------------------------------- model workers


def model_worker(kind, config):
  """Builds one model and serves train / log_prob / sample / evaluate requests."""
  dataset, train = load_data(config)
  seed_models(config)
  image_shape = dataset.image_shape
  model = (build_ours if kind == "ours" else build_tfp)(image_shape, config)
  jit = config.jit and kind == "ours"
  train_step = make_train_step(model, config, jit)
  batches = iter(train)
  state = {"step": 0}

  def train_chunk(n):
    losses, norms, checksums = [], [], []
    start = time.perf_counter()
    for i in range(n):
      x = next(batches)
      if state["step"] == 0 and model.initialize is not None:
        model.initialize(x)  # eager data-dependent ActNorm init on the first batch
      loss, norm = train_step(x)
      losses.append(loss)
      norms.append(norm)
      state["step"] += 1
      if i in (0, n - 1):
        checksums.append(x)
    losses = [float(l) for l in losses]  # waits for the last step
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "losses": losses, "grad_norms": [float(g) for g in norms],
            "checksums": [float(tf.reduce_sum(tf.cast(c, tf.float64))) for c in checksums]}

  fixed = next(iter(eval_batches(dataset, config, config.log_prob_batch)))
  log_prob = tf.function(model.log_prob, jit_compile=jit)
  sample = tf.function(lambda: model.sample(config.sample_count), jit_compile=jit)

  def timed(fn, repeats):
    fn()  # trace / warm up
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      out = fn()
      out.numpy()
      times.append(time.perf_counter() - start)
    return {"seconds": times, "finite": float(np.mean(np.isfinite(out.numpy())))}

  def padded(fn, x):  # one static batch shape: TFP's Glow fails on an unknown batch size
    n = x.shape[0]
    filler = tf.fill([EVAL_BATCH - n] + list(image_shape), 0.5)
    return fn(tf.concat([x, filler], axis=0)).numpy()[:n]

  def evaluate():
    bpd_fn = tf.function(lambda x: lf_flows.log_prob_to_bits_per_dim(
        model.log_prob(x), image_shape, dataset.num_bins), jit_compile=jit)

    start = time.perf_counter()
    test = eval_batches(dataset, config, EVAL_BATCH)
    bpd = np.concatenate([padded(bpd_fn, x) for x in test])
    first = bpd[:FIRST_TEST_IMAGES]
    return {"bpd_all": float(np.mean(bpd)), "n_all": len(bpd), "bpd_first": float(np.mean(first)),
            "n_first": len(first), "finite": float(np.mean(np.isfinite(bpd))),
            "seconds": time.perf_counter() - start}

  def reconstruction():
    """max |decode(encode(x)) - x| in float32 over the test set and temperature-1 samples."""
    def max_error(x):  # NaN for an image whose round trip is not finite (max would skip it)
      # tf.identity: a fresh tensor, so TFP's bijector cache cannot hand back x itself
      back = model.decode(tf.identity(model.encode(x)))
      error = tf.reduce_max(tf.abs(back - x), axis=[1, 2, 3])
      finite = tf.reduce_all(tf.math.is_finite(back), axis=[1, 2, 3])
      return tf.where(finite, error, tf.fill(tf.shape(error), np.float32("nan")))

    round_trip = tf.function(max_error, jit_compile=jit)
    sample = tf.function(lambda: model.sample(EVAL_BATCH), jit_compile=jit)

    test = np.concatenate([padded(round_trip, x)
                           for x in eval_batches(dataset, config, EVAL_BATCH)])
    test_finite = np.isfinite(test)
    drawn = [sample() for _ in range(config.sample_batches)]
    finite = np.concatenate([np.all(np.isfinite(s.numpy()), axis=(1, 2, 3)) for s in drawn])
    sampled = np.concatenate([padded(round_trip, s) for s in drawn])[finite]
    values = np.concatenate([s.numpy() for s in drawn])[finite]
    return {"test_max": float(np.max(test[test_finite], initial=0.0)),
            "test_mean": float(np.mean(test[test_finite])) if test_finite.any() else None,
            "n_test": len(test), "test_nonfinite": int(np.sum(~test_finite)),
            "n_samples": len(finite),
            "samples_nonfinite": int(np.sum(~finite)),
            "samples_roundtrip_nonfinite": int(np.sum(~np.isfinite(sampled))),
            "samples_max": float(np.max(sampled[np.isfinite(sampled)], initial=0.0)),
            "samples_mean": (float(np.mean(sampled[np.isfinite(sampled)]))
                             if np.isfinite(sampled).any() else None),
            "samples_range": ([float(values.min()), float(values.max())] if len(values)
                              else None)}

  def profile():
    step = make_train_step(model, config, jit=False) if jit else train_step
    return dict(profile_train_step(step, batches, train, config),
                image_shape=list(image_shape))

  harness.serve(
      {"parameters": num_parameters(model.variables), "image_shape": list(image_shape),
       "rss_after_setup_mb": harness.current_rss_mb(), "num_bins": dataset.num_bins},
      {"train": train_chunk,
       "log_prob": lambda repeats: timed(lambda: log_prob(fixed), repeats),
       "sample": lambda repeats: timed(sample, repeats),
       "evaluate": evaluate,
       "reconstruction": reconstruction,
       "peak_rss": lambda: {"peak_rss_mb": harness.peak_rss_mb()},
       "profile": profile})


# ------------------------------------------------------------------------- profile

# Which part of the model made an op: (source module of the innermost lcflow_tf frame, whether
# a Keras layer is deeper in the stack) -> row of the profile table.
_COMPONENTS = [
    ("coupling networks (Keras conv3x3-conv1x1-conv3x3, ReLU)", "affine_coupling.py", True),
    ("coupling: affine map and log-det (sigmoid scale, slicing)", "affine_coupling.py", False),
    ("1x1 conv: applying W (matmul over channels)", "invertible_conv1x1.py", "matmul"),
    ("1x1 conv: W from its LU factors, log|det W| (LU)", "invertible_conv1x1.py", False),
    ("ActNorm", "act_norm.py", False),
    ("split: learned prior network (Keras conv)", "factor_out.py", True),
    ("split: factor-out, prior log-density", "factor_out.py", False),
    ("split: channel permutation", "channel_permutation.py", False),
    ("squeeze / unsqueeze", "squeeze.py", False),
    ("per-element log-det map bookkeeping", "base.py", False),
    ("base log-density and loss", "flows.py", False),
]
_MATMULS = ("Einsum", "MatMul", "BatchMatMulV2", "BatchMatMulV3")
_OPTIMIZER = "optimizer (Adam update)"
_OTHER = "other (loss mean, step glue, unattributed)"

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


def _component_of(op):
  frames = list(op.traceback)
  files = [f.filename.replace(os.sep, "/") for f in frames]
  if any("/keras/src/optimizers/" in f for f in files):
    return _OPTIMIZER
  ours = [i for i, f in enumerate(files) if "/lcflow_tf/" in f]
  if not ours:
    return _OTHER
  innermost = ours[-1]
  module = os.path.basename(files[innermost])
  in_keras = any("/keras/src/" in f for f in files[innermost + 1:])
  for label, source, kind in _COMPONENTS:
    if source != module:
      continue
    if kind == "matmul":  # the [N*H*W, C] products, not W's own [C, C] ones
      shape = op.outputs[0].shape if op.outputs else None
      if op.type in _MATMULS and shape is not None and shape.rank == 2 and (
          shape[0] is None or shape[0] != shape[1]):
        return label
    elif kind == in_keras:
      return label
  return _OTHER


class _Attribution:
  """Maps op names of a traced step's graph to model components; gradients to their forward op."""

  def __init__(self, graph):
    self._by_name = {}
    votes = collections.defaultdict(collections.Counter)
    for op in graph.get_operations():
      if op.name.startswith("gradient_tape/"):
        continue
      component = _component_of(op)
      self._by_name[op.name] = component
      parts = op.name.split("/")
      for i in range(1, len(parts)):
        votes["/".join(parts[:i])][component] += 1
    self._by_scope = {scope: c.most_common(1)[0][0] for scope, c in votes.items()}

  def __call__(self, name):
    """(component, is_backward) of a runtime op name."""
    backward = name.startswith("gradient_tape/")
    if backward:
      name = name[len("gradient_tape/"):]
    elif name.startswith("adam/") or name.startswith("Adam/"):
      return _OPTIMIZER, False
    parts = name.split("/")
    for i in range(len(parts), 0, -1):
      prefix = "/".join(parts[:i])
      if prefix in self._by_name:
        return self._by_name[prefix], backward
      if prefix in self._by_scope:
        return self._by_scope[prefix], backward
    return _OTHER, backward


def _op_events(xspace_path):
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
      if name == "profiled_train_step":
        windows.append((start, end))
      elif ":" in name and "::" not in name and line.name.startswith("tf_Compute"):
        op_name, op_type = name.rsplit(":", 1)
        ops.append((op_name, op_type, start, end))
  return sorted(windows), ops


def _union_length(intervals):
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


def profile_train_step(train_step, batches, train, config):
  """Profiles a warm training step: op time per model component and per op family.

  Args:
    train_step: the compiled (not XLA) step of our flow, already traced.
    batches: iterator of the training stream it is fed from.
    train: the training `tf.data.Dataset`, to time the pipeline alone.
    config: the `Config`.

  Returns:
    A dict with `rows` (per component, then timing rows) and `families` (per op family).
  """
  timed_steps, traced_steps = config.profile_steps
  alone = iter(train)
  next(alone)
  start = time.perf_counter()
  for _ in range(config.pipeline_batches):
    next(alone)
  pipeline_ms = 1000.0 * (time.perf_counter() - start) / config.pipeline_batches
  del alone

  train_step(next(batches))[0].numpy()  # warm
  waits, start = [], time.perf_counter()
  for _ in range(timed_steps):
    t = time.perf_counter()
    x = next(batches)
    waits.append(time.perf_counter() - t)
    train_step(x)[0].numpy()
  untraced_ms = 1000.0 * (time.perf_counter() - start) / timed_steps

  attribution = _Attribution(train_step.get_concrete_function(x).graph)
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for i in range(traced_steps):
      with tf.profiler.experimental.Trace("profiled_train_step", step_num=i, _r=1):
        x = next(batches)
        train_step(x)[0].numpy()
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
    if len(paths) != 1:
      raise RuntimeError(f"expected one profiler trace in {logdir}, found {paths}")
    windows, ops = _op_events(paths[0])
  if len(windows) != traced_steps:
    raise RuntimeError(f"expected {traced_steps} traced steps, the trace has {len(windows)}")

  per_component = collections.defaultdict(lambda: [0, 0])
  per_family = collections.Counter()
  intervals = []
  for name, op_type, start, end in ops:
    if not any(w0 <= start < w1 for w0, w1 in windows):
      continue
    component, backward = attribution(name)
    per_component[component][int(backward)] += end - start
    op_type = op_type.replace("_MklNative", "").replace("_Mkl", "").replace("_Fused", "")
    family = next(label for label, match in _OP_FAMILIES if match(op_type))
    per_family[family] += end - start
    intervals.append((start, end))
  ms = lambda ps: ps / 1e9 / traced_steps  # picoseconds over all traced steps -> ms/step
  op_total = sum(sum(v) for v in per_component.values())
  traced_ms = ms(sum(w1 - w0 for w0, w1 in windows))
  busy_ms = ms(_union_length(intervals))

  rows = []
  for label in sorted(per_component, key=lambda c: -sum(per_component[c])):
    fwd, bwd = per_component[label]
    rows.append({"part": label, "forward ms/step": ms(fwd), "backward ms/step": ms(bwd),
                 "total ms/step": ms(fwd + bwd), "% of op time": 100.0 * (fwd + bwd) / op_total})
  rows += [
      {"part": "= sum of op time (executor threads can overlap)", "total ms/step": ms(op_total),
       "% of op time": 100.0},
      {"part": "wall time per step, traced", "total ms/step": traced_ms},
      {"part": "wall time per step, not traced", "total ms/step": untraced_ms},
      {"part": "no op running: Python, tf.function call, executor gaps",
       "total ms/step": max(traced_ms - busy_ms, 0.0)},
      {"part": "waiting for the next batch in the loop (prefetched pipeline)",
       "total ms/step": 1000.0 * statistics.mean(waits)},
      {"part": "data pipeline alone: time per batch (overlaps training via prefetch)",
       "total ms/step": pipeline_ms},
  ]
  families = [{"op family": label, "ms/step": ms(per_family[label]),
               "% of op time": 100.0 * per_family[label] / op_total}
              for label, _ in _OP_FAMILIES]
  return {"rows": rows, "families": families, "traced_steps": traced_steps}


# ------------------------------------------------------------------------- parent


def _median_rate(answers, count):
  return count / statistics.median(t for a in answers for t in a["seconds"])


def pipeline_images_per_s(config):
  _, train = load_data(config)
  batches = iter(train)
  next(batches)  # start-up
  start = time.perf_counter()
  for _ in range(config.pipeline_batches):
    next(batches)
  return config.pipeline_batches * config.batch / (time.perf_counter() - start)


def compare(args, config):
  data_rate = pipeline_images_per_s(config)
  worker_args = sys.argv[1:]
  workers = {}
  for kind in MODELS:  # they set up side by side; nothing is timed before both are ready
    workers[kind] = harness.Worker(SCRIPT, worker_args + ["--worker", kind], kind)
  for kind in MODELS:
    print(f"[{kind}] ready: {workers[kind].ready}", flush=True)

  # Training: chunks of steps, the two models taking turns (who goes first alternates).
  chunks = [config.warmup_steps]
  left = config.steps - config.warmup_steps
  while left > 0:
    chunks.append(min(config.chunk_steps, left))
    left -= chunks[-1]
  train = {kind: [] for kind in MODELS}
  for i, n in enumerate(chunks):
    for kind in (MODELS if i % 2 == 0 else MODELS[::-1]):
      train[kind].append(workers[kind].request("train", n=n))
      print(f"[{kind}] steps {sum(chunks[:i + 1])}/{config.steps}: "
            f"{n * config.batch / train[kind][-1]['seconds']:.1f} images/s, "
            f"loss {train[kind][-1]['losses'][-1]:.1f}", flush=True)
  same_data = all(a["checksums"] == b["checksums"] for a, b in zip(train["ours"], train["tfp"]))

  measured = {kind: {"log_prob": [], "sample": []} for kind in MODELS}
  for r in range(config.rounds):
    for kind in (MODELS if r % 2 == 0 else MODELS[::-1]):
      for what in ("log_prob", "sample"):
        measured[kind][what].append(workers[kind].request(what, repeats=config.repeats))
  evaluation = {kind: workers[kind].request("evaluate") for kind in MODELS}
  reconstruction = {kind: workers[kind].request("reconstruction") for kind in MODELS}
  ready = {kind: workers[kind].ready for kind in MODELS}
  peak = {kind: workers[kind].request("peak_rss")["peak_rss_mb"] for kind in MODELS}
  workers["tfp"].close()
  profile = workers["ours"].request("profile")  # after its peak memory was read
  workers["ours"].close()

  image_shape, bins = ready["ours"]["image_shape"], ready["ours"]["num_bins"]
  dims = float(np.prod(image_shape))
  to_bpd = lambda loss: (loss + dims * math.log(bins)) / (dims * math.log(2.0))
  values = {}
  for kind in MODELS:
    timed = train[kind][1:]  # after the warm-up chunk
    timed_images = sum(len(c["losses"]) for c in timed) * config.batch
    losses = [l for chunk in train[kind] for l in chunk["losses"]]
    final = statistics.mean(losses[-LOSS_WINDOW:])
    values[kind] = {
        "train": timed_images / sum(c["seconds"] for c in timed),
        "warmup": train[kind][0]["seconds"],
        "log_prob": _median_rate(measured[kind]["log_prob"], config.log_prob_batch),
        "sample": _median_rate(measured[kind]["sample"], config.sample_count),
        "peak": peak[kind],
        "setup_rss": ready[kind]["rss_after_setup_mb"],
        "params": ready[kind]["parameters"],
        "bpd_first": evaluation[kind]["bpd_first"],
        "bpd_all": evaluation[kind]["bpd_all"],
        "loss_bpd": to_bpd(final),
    }
  n_first, n_all = evaluation["ours"]["n_first"], evaluation["ours"]["n_all"]
  metrics = [
      ("train", f"training images/s (steps {config.warmup_steps + 1}-{config.steps})"),
      ("warmup", f"first {config.warmup_steps} steps incl. tracing (s)"),
      ("log_prob", f"log_prob images/s (batch {config.log_prob_batch}, compiled)"),
      ("sample", f"sampling images/s ({config.sample_count} samples, compiled)"),
      ("peak", "peak RSS of the process (MB)"),
      ("setup_rss", "RSS after imports, data and model set-up (MB)"),
      ("params", "trainable parameters"),
      ("bpd_first", f"test bits/dim, first {n_first} test images"),
      ("bpd_all", f"test bits/dim, all {n_all} test images"),
      ("loss_bpd", f"final train loss as bits/dim (mean of last "
                   f"{min(LOSS_WINDOW, config.steps)} steps)"),
  ]
  rows = [{"metric": label, "ours": values["ours"][key], "TFP": values["tfp"][key],
           "ratio ours/TFP": values["ours"][key] / values["tfp"][key]}
          for key, label in metrics]
  rows.append({"metric": "data pipeline alone, images/s (shared; prefetched)", "ours": data_rate,
               "TFP": data_rate, "ratio ours/TFP": "same pipeline"})

  suffix = result_suffix(config)
  command = results.command_line()

  def divergence(kind):  # first non-finite loss, largest gradient norm
    losses = [l for c in train[kind] for l in c["losses"]]
    norms = [g for c in train[kind] for g in c["grad_norms"]]
    bad = next((i + 1 for i, l in enumerate(losses) if not math.isfinite(l)), None)
    finite_norms = [g for g in norms if math.isfinite(g)]
    return (f"{kind}: " + (f"first non-finite loss at step {bad}" if bad else "all losses finite")
            + f", largest gradient norm {max(finite_norms, default=float('nan')):.3g} at step "
            f"{norms.index(max(finite_norms)) + 1 if finite_norms else '-'}")

  chunk_rates = {kind: [round(len(c["losses"]) * config.batch / c["seconds"], 1)
                        for c in train[kind][1:]] for kind in MODELS}
  notes = (
      f"{config.dataset} {'x'.join(map(str, image_shape))}, {bins} bins; both Glow with "
      f"L={config.levels}, K={config.steps_per_level}, width {config.width}, batch "
      f"{config.batch}, {config.steps} steps of Adam {config.learning_rate:g} with "
      f"{config.lr_warmup}-step linear warm-up, "
      + (f"gradients clipped to global norm {config.grad_clip_norm:g}"
         if config.grad_clip_norm is not None else "no gradient clipping")
      + f" ({divergence('ours')}; {divergence('tfp')}), the same dequantised training stream "
      f"(make_train_pipeline, seed {config.seed}; batch checksums equal: "
      f"{'yes' if same_data else 'NO'}). Ours: build_flow(architecture='glow', split='static')"
      f"{', XLA (--jit)' if config.jit else ''}; TFP: tfb.Glow(num_glow_blocks={config.levels}, "
      f"num_steps_per_block={config.steps_per_level}, GlowDefaultNetwork(num_hidden="
      f"{config.width}), GlowDefaultExitNetwork) over Sample(Normal(0, 1), D). Both see "
      "x = (k + u)/bins in [0, 1) (TFP's Glow needs no other range: its ActNorm initialises "
      "from the data), bits/dim = -(log p(x) - D log bins)/(D log 2); test set: one "
      f"dequantisation sample, seed {config.eval_seed}. Each model in its own process "
      "(peak RSS: the whole process up to the end of evaluation, before profiling), "
      f"trained in alternating turns of {config.chunk_steps} steps (images/s per turn: ours "
      f"{chunk_rates['ours']}, TFP {chunk_rates['tfp']}); log_prob and sampling: median of "
      f"{config.rounds} alternating rounds x {config.repeats} calls. At initialisation TFP's "
      "exit (split) coupling scales the factored-out half by exp(net + 2), i.e. by e^2 = 7.4 "
      "(zero-initialised GlowDefaultExitNetwork plus TFP's fixed +2), while ours' learned "
      "prior starts at N(0, 1), so TFP's first losses are much higher. Ratio ours/TFP: higher "
      "is better for images/s, lower for bits/dim, loss, time and memory. Goal: training "
      "throughput >= 1.5x TFP's and clearly lower bits/dim at equal steps (anchor measured "
      "earlier on 2 cores: TFP 4.02 test bpd on the first 2000 images, ~115 images/s).")
  details = {"same_data": same_data, "chunk_steps": chunks, "images_per_s_per_chunk": chunk_rates,
             "losses": {k: [l for c in train[k] for l in c["losses"]] for k in MODELS},
             "grad_norms": {k: [g for c in train[k] for g in c["grad_norms"]] for k in MODELS},
             "log_prob_seconds": {k: [t for a in measured[k]["log_prob"] for t in a["seconds"]]
                                  for k in MODELS},
             "sample_seconds": {k: [t for a in measured[k]["sample"] for t in a["seconds"]]
                                for k in MODELS},
             "sample_finite_fraction": {k: measured[k]["sample"][-1]["finite"] for k in MODELS},
             "evaluation": evaluation, "reconstruction": reconstruction,
             "config": dataclasses.asdict(config)}
  print(results.write("peer_tfp_glow" + suffix, command, rows,
                      ["metric", "ours", "TFP", "ratio ours/TFP"], notes=notes,
                      results_dir=args.results_dir, details=details))
  write_reconstruction(args, config, reconstruction)
  write_profile(args, config, profile)


def write_reconstruction(args, config, answer):
  """Table: encode/decode round-trip error of both trained models, float32."""
  rows = []
  for kind in MODELS:
    a = answer[kind]
    rows.append({"model": kind, "images": f"all {a['n_test']} test images",
                 "max abs error": a["test_max"], "mean of per-image max": a["test_mean"],
                 "non-finite": a["test_nonfinite"]})
    rows.append({"model": kind, "images": f"{a['n_samples']} samples, temperature 1",
                 "max abs error": a["samples_max"], "mean of per-image max": a["samples_mean"],
                 "non-finite": a["samples_nonfinite"] + a["samples_roundtrip_nonfinite"]})
  notes = (f"Both Glows of the table above after {config.steps} training steps, float32, "
           "not XLA unless --jit. Error: max over pixels of |decode(encode(x)) - x| per image "
           "(x in [0, 1), one dequantisation sample of the test images; samples are the "
           "models' own temperature-1 draws, whose values range over "
           f"ours {answer['ours']['samples_range']}, TFP {answer['tfp']['samples_range']}). "
           "Non-finite: test images whose round trip has NaN/Inf values; samples that have "
           "NaN/Inf values or whose round trip has (all left out of the error).")
  print(results.write("reconstruction" + result_suffix(config), results.command_line(), rows,
                      ["model", "images", "max abs error", "mean of per-image max",
                       "non-finite"], notes=notes, results_dir=args.results_dir,
                      details=answer))


def write_profile(args, config, answer):
  family_table = "\n".join(
      ["| op family | ms/step | % of op time |", "|---|---|---|"]
      + [f"| {f['op family']} | {f['ms/step']:.4g} | {f['% of op time']:.3g} |"
         for f in answer["families"]])
  command = results.command_line()
  notes = (
      f"Our Glow training step ({'x'.join(map(str, answer['image_shape']))}, L={config.levels}, "
      f"K={config.steps_per_level}, width {config.width}, batch {config.batch}, not XLA), "
      f"{answer['traced_steps']} steps traced with tf.profiler.experimental after warm-up. "
      "Op time is summed from the trace's TensorFlow op events and attributed to the part of "
      "the model whose code created the op (the op's creation stack in the traced graph; a "
      "gradient op counts for the op it differentiates: the backward column). The executor "
      "runs independent ops on several threads, so op time can exceed the wall time; 'no op "
      "running' is the traced wall time minus the time when at least one op ran. Tracing "
      "itself slows the step (traced vs not traced).\n\nThe same op time by op family:\n\n"
      + family_table)
  print(results.write("profile_train_step" + result_suffix(config), command, answer["rows"],
                      ["part", "forward ms/step", "backward ms/step", "total ms/step",
                       "% of op time"], notes=notes, results_dir=args.results_dir,
                      details={"families": answer["families"]}))


def main():
  args, config = parse_args()
  if args.worker:
    model_worker(args.worker, config)
  else:
    compare(args, config)


if __name__ == "__main__":
  main()
