"""Our Glow against normflows' (PyTorch) multi-scale Glow, on the same batches.

normflows runs in a worker process under the Python of a separate PyTorch venv
(benchmarks/requirements-peers.txt; see docs/benchmarks.md), our model in a TensorFlow worker
(benchmarks/peer_tfp_glow.py's, built and trained exactly as in that benchmark). This
parent exports our training stream and test set once (`peer_protocol.export_stream`, to a
temporary directory removed at the end), so both models train on identical batches (batch
checksums compared) and are evaluated on identical test images; then it trains them in
alternating turns of `--chunk_steps` (the first `--warmup_steps` not timed), times log_prob
and sampling in alternating rounds, and evaluates test bits/dim on all test images. Writes
docs/results/peer_normflows{suffix}.{json,md}.

Recipe: Adam with a linear warm-up, then a constant or cosine learning rate
(`--lr_schedule`), optional gradient clipping (`--grad_clip_norm`) and weight averaging
(`--ema_decay`, evaluated with the averaged weights), the same for both models
(`--normflows_recipe identical`); or normflows with the recipe of its own Glow example
(`--normflows_recipe example`: Adamax, weight decay 1e-5, no warm-up, clipping or
averaging, steps with a non-finite loss skipped) while ours keeps the flags' recipe.

  python benchmarks/peer_normflows.py --grad_clip_norm 1000   # 2000 steps, ~1 h on 2 cores
  python benchmarks/peer_normflows.py --quick                 # 200 steps
  python benchmarks/peer_normflows.py --smoke                 # 8x8 digits, tiny (the test)
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # pylint: disable=g-import-not-at-top

from benchmarks import peer_protocol
from benchmarks import peer_tfp_glow
from benchmarks import procs
from benchmarks import results
from lcflow_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "benchmarks", "normflows_worker.py")
OURS_WORKER = os.path.abspath(peer_tfp_glow.__file__)
TORCH_PYTHON_ENV = "LCFLOW_TORCH_PYTHON"
DEFAULT_TORCH_PYTHON = os.path.join(ROOT, ".venv-torch", "bin", "python")
RECIPES = ("identical", "example")
EXAMPLE_WEIGHT_DECAY = 1e-5  # normflows' Glow example: Adamax(lr=1e-3, weight_decay=1e-5)
LOSS_WINDOW = 50
EVAL_BATCH = 256

# The sizes shared with peer_tfp_glow.py's modes (its worker measures ours with them).
_SHARED = ("dataset", "steps", "levels", "steps_per_level", "width", "batch", "chunk_steps",
           "warmup_steps", "eval_images", "rounds", "repeats", "log_prob_batch", "sample_count")
MODES = {mode: {k: settings[k] for k in _SHARED}
         for mode, settings in peer_tfp_glow.MODES.items()}


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
  learning_rate: float
  lr_warmup: int
  lr_schedule: str
  lr_min_ratio: float
  ema_decay: float
  grad_clip_norm: float | None
  normflows_recipe: str
  torch_threads: int
  seed: int
  eval_seed: int
  ours: bool


def parse_args(argv=None):
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true", help="200 steps")
  mode.add_argument("--smoke", action="store_true",
                    help="tiny models on 8x8 digits, a few steps (seconds; for the tests)")
  for key, kind, text in (
      ("steps", int, "training steps of each model (full: 2000)"),
      ("levels", int, "L, levels (default 2)"),
      ("steps_per_level", int, "K, flow steps per level (default 8)"),
      ("width", int, "hidden channels of the couplings (default 128)"),
      ("batch", int, "training batch size (default 64)"),
      ("chunk_steps", int, "training steps per turn when alternating the models"),
      ("warmup_steps", int, "first steps (set-up, tracing) left out of the training throughput"),
      ("eval_images", int, "test images for bits/dim (default: the whole test split)")):
    parser.add_argument(f"--{key}", type=kind, help=text)
  parser.add_argument("--dataset", choices=("fashion_mnist", "digits"),
                      help="data (full/quick: fashion_mnist; smoke: digits)")
  parser.add_argument("--learning_rate", type=float, default=1e-3, help="peak learning rate")
  parser.add_argument("--lr_warmup", type=int, default=200,
                      help="steps of linear learning-rate warm-up")
  parser.add_argument("--lr_schedule", choices=peer_protocol.SCHEDULES, default="constant",
                      help="learning rate after the warm-up (cosine: decays to "
                           "--lr_min_ratio x the peak at the last step)")
  parser.add_argument("--lr_min_ratio", type=float, default=0.01,
                      help="floor of the cosine schedule as a fraction of the peak")
  parser.add_argument("--ema_decay", type=float, default=0.0,
                      help="exponential moving average of the weights with this decay, used "
                           "for evaluation (0: none)")
  parser.add_argument("--grad_clip_norm", type=float, default=None,
                      help="clip gradients to this global norm (default: none)")
  parser.add_argument("--normflows_recipe", choices=RECIPES, default="identical",
                      help="identical: normflows trains with the recipe of the flags above; "
                           "example: with the recipe of normflows' Glow example")
  parser.add_argument("--no_ours", action="store_true",
                      help="measure normflows alone (no TensorFlow worker for our model)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the data stream and of the models' initialisation")
  parser.add_argument("--eval_seed", type=int, default=1234,
                      help="seed of the test set's dequantisation noise")
  parser.add_argument("--torch_python", default=None,
                      help=f"Python of the PyTorch venv (default: ${TORCH_PYTHON_ENV}, else "
                           ".venv-torch/bin/python of this checkout)")
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="PyTorch intra-op threads of the normflows worker (0: PyTorch's "
                           "default, one per core)")
  parser.add_argument("--results_dir", default=results.RESULTS_DIR,
                      help="where the JSON and Markdown results go (default docs/results)")
  parser.add_argument("--stream_dir", default=None,
                      help="where the exported stream's temporary directory goes (default: "
                           "the system's temporary directory)")
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
  if settings["eval_images"] is not None and settings["eval_images"] < 1:
    parser.error(f"--eval_images must be >= 1, got {settings['eval_images']}")
  if args.torch_threads < 0:
    parser.error(f"--torch_threads must be >= 0 (0: PyTorch's default), got "
                 f"{args.torch_threads!r}")
  if not args.learning_rate > 0:
    parser.error(f"--learning_rate must be > 0, got {args.learning_rate!r}")
  if args.lr_schedule == "cosine" and args.lr_warmup >= settings["steps"]:
    parser.error(f"--lr_warmup ({args.lr_warmup}) must be below --steps "
                 f"({settings['steps']}) for the cosine schedule")
  if not 0.0 <= args.lr_min_ratio <= 1.0:
    parser.error(f"--lr_min_ratio must be in [0, 1], got {args.lr_min_ratio!r}")
  if not 0.0 <= args.ema_decay < 1.0:
    parser.error(f"--ema_decay must be in [0, 1) (0: no averaging), got {args.ema_decay!r}")
  if args.grad_clip_norm is not None and not (args.grad_clip_norm > 0
                                              and math.isfinite(args.grad_clip_norm)):
    parser.error(f"--grad_clip_norm must be a finite number > 0, got {args.grad_clip_norm!r}")
  config = Config(mode=mode_name, learning_rate=args.learning_rate, lr_warmup=args.lr_warmup,
                  lr_schedule=args.lr_schedule, lr_min_ratio=args.lr_min_ratio,
                  ema_decay=args.ema_decay, grad_clip_norm=args.grad_clip_norm,
                  normflows_recipe=args.normflows_recipe, torch_threads=args.torch_threads,
                  seed=args.seed,
                  eval_seed=args.eval_seed, ours=not args.no_ours, **settings)
  return args, config


def result_suffix(config):
  """'' / '_quick' / '_smoke', then the recipe: _cosine, _ema<decay>, _clip<norm>, ..."""
  return ({"full": "", "quick": "_quick", "smoke": "_smoke"}[config.mode]
          + ("_cosine" if config.lr_schedule == "cosine" else "")
          + (f"_ema{config.ema_decay:g}" if config.ema_decay > 0 else "")
          + (f"_clip{config.grad_clip_norm:g}" if config.grad_clip_norm is not None else "")
          + ("_nfexample" if config.normflows_recipe == "example" else "")
          + ("_alone" if not config.ours else ""))


def torch_python(args):
  """The PyTorch venv's Python: --torch_python, $LCFLOW_TORCH_PYTHON, or .venv-torch."""
  return args.torch_python or os.environ.get(TORCH_PYTHON_ENV) or DEFAULT_TORCH_PYTHON


# ------------------------------------------------------------------------- workers


def torch_env():
  """Environment of the PyTorch worker: OpenMP threads that sleep instead of spinning.

  PyTorch's OpenMP threads spin while they wait; on the shared 2-core machine (load ~8,
  2026-11-30, an ad-hoc check) that made a training step of the full-size model ~6x slower
  with 2 threads (15 s) than with 1 (2.5 s), while with OMP_WAIT_POLICY=PASSIVE 2 threads
  took about as long as 1. A value already set in the environment is kept.
  """
  return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def normflows_config(config):
  """The torch worker's settings: the shared recipe, or normflows' example recipe."""
  recipe = dict(optimizer="adam", weight_decay=0.0, lr_warmup=config.lr_warmup,
                lr_schedule=config.lr_schedule, lr_min_ratio=config.lr_min_ratio,
                ema_decay=config.ema_decay, grad_clip_norm=config.grad_clip_norm,
                skip_nonfinite=False)
  if config.normflows_recipe == "example":
    recipe.update(optimizer="adamax", weight_decay=EXAMPLE_WEIGHT_DECAY, lr_warmup=0,
                  lr_schedule="constant", ema_decay=0.0, grad_clip_norm=None,
                  skip_nonfinite=True)
  return dict(recipe, levels=config.levels, steps_per_level=config.steps_per_level,
              width=config.width, seed=config.seed, steps=config.steps,
              learning_rate=config.learning_rate, log_prob_batch=config.log_prob_batch,
              sample_count=config.sample_count, eval_batch=EVAL_BATCH,
              threads=config.torch_threads)


def ours_worker_args(config):
  """Command line of peer_tfp_glow.py's worker for our model with this configuration.

  Recipe flags beyond peer_tfp_glow.py's own (--lr_schedule, --lr_min_ratio, --ema_decay)
  are passed only when set, so the worker rejects a recipe it cannot train.
  """
  args = ([] if config.mode == "full" else [f"--{config.mode}"]) + [
      "--dataset", config.dataset, "--steps", str(config.steps), "--levels", str(config.levels),
      "--steps_per_level", str(config.steps_per_level), "--width", str(config.width),
      "--batch", str(config.batch), "--chunk_steps", str(config.chunk_steps),
      "--warmup_steps", str(config.warmup_steps), "--learning_rate", repr(config.learning_rate),
      "--lr_warmup", str(config.lr_warmup), "--seed", str(config.seed),
      "--eval_seed", str(config.eval_seed)]
  if config.eval_images is not None:
    args += ["--eval_images", str(config.eval_images)]
  if config.grad_clip_norm is not None:
    args += ["--grad_clip_norm", repr(config.grad_clip_norm)]
  if config.lr_schedule != "constant":
    args += ["--lr_schedule", config.lr_schedule, "--lr_min_ratio", repr(config.lr_min_ratio)]
  if config.ema_decay > 0:
    args += ["--ema_decay", repr(config.ema_decay)]
  return args


def check_ours_supports(config):
  """Exits with one line if our model's worker does not accept this recipe."""
  args = ours_worker_args(config)
  try:
    peer_tfp_glow.parse_args(args)
  except SystemExit:
    cli.fail("our model's worker (benchmarks/peer_tfp_glow.py) does not accept "
             f"{' '.join(args)} (message above); rerun with --no_ours to measure normflows "
             "alone")


# ------------------------------------------------------------------------- the run


def compare(args, config):
  python = torch_python(args)
  if not os.path.isfile(python):
    cli.fail(f"no PyTorch Python at {python}; install the peer venv (docs/benchmarks.md) "
             f"or pass --torch_python / set ${TORCH_PYTHON_ENV}")
  if config.ours:
    check_ours_supports(config)
  stream = tempfile.mkdtemp(prefix="peer_stream_", dir=args.stream_dir)
  workers = {}
  try:
    print(f"exporting {config.steps} training batches and the test set to {stream}", flush=True)
    meta = peer_protocol.export_stream(stream, config.dataset, config.batch, config.steps,
                                       config.seed, config.eval_seed, config.eval_images)
    if config.ours:
      workers["ours"] = procs.Worker(OURS_WORKER, ours_worker_args(config) + ["--worker", "ours"],
                                     "ours")
    workers["normflows"] = procs.Worker(
        WORKER, ["--stream", stream, "--config", json.dumps(normflows_config(config))],
        "normflows", python=python, env=torch_env())
    for name, worker in workers.items():
      print(f"[{name}] ready: {worker.ready}", flush=True)
    measured = measure(workers, config)
  finally:
    for worker in workers.values():
      worker.kill()
    shutil.rmtree(stream, ignore_errors=True)
  write(args, config, meta, measured)


def measure(workers, config):
  """Training turns, log_prob / sampling rounds and evaluation of every worker, alternating."""
  names = list(workers)
  chunks = peer_protocol.chunk_plan(config.steps, config.warmup_steps, config.chunk_steps)
  train = peer_protocol.alternate_training(workers, chunks, config.batch, config.steps)
  timings = {name: {"log_prob": [], "sample": []} for name in names}
  for r in range(config.rounds):
    for name in (names if r % 2 == 0 else names[::-1]):
      for what in ("log_prob", "sample"):
        timings[name][what].append(workers[name].request(what, repeats=config.repeats))
  evaluation = {name: workers[name].request("evaluate") for name in names}
  peak = {name: workers[name].request("peak_rss")["peak_rss_mb"] for name in names}
  ready = {name: workers[name].ready for name in names}
  for worker in workers.values():
    worker.close()
  return {"chunks": chunks, "train": train, "timings": timings, "evaluation": evaluation,
          "peak": peak, "ready": ready}


def same_data(meta, measured):
  """Per model: did it train on the exported batches (and evaluate the exported test set)?"""
  bounds = [i for first, last in peer_protocol.chunk_bounds(measured["chunks"])
            for i in ((first,) if first == last else (first, last))]
  same = {}
  for name, turns in measured["train"].items():
    got = [c for turn in turns for c in turn["checksums"]]
    if name == "ours":  # peer_tfp_glow's worker: TF sums of the first and last batch per turn
      same[name] = got == [meta["tf_checksums"][i] for i in bounds]
    else:  # [step, exact sum] of the first and last batch per turn, and of the test set
      same[name] = (got == [[i, meta["checksums"][i]] for i in bounds]
                    and measured["evaluation"][name]["test_checksum"] == meta["test_checksum"])
  return same


def write(args, config, meta, measured):
  names = list(measured["train"])
  image_shape, bins = meta["image_shape"], meta["num_bins"]
  dims = float(np.prod(image_shape))
  to_bpd = lambda loss: (loss + dims * math.log(bins)) / (dims * math.log(2.0))
  values = {}
  for name in names:
    turns = measured["train"][name]
    timed = turns[1:]  # after the warm-up turn
    losses = [l for t in turns for l in t["losses"]]
    evaluation, ready = measured["evaluation"][name], measured["ready"][name]
    values[name] = {
        "train": sum(len(t["losses"]) for t in timed) * config.batch
                 / sum(t["seconds"] for t in timed),
        "warmup": turns[0]["seconds"],
        "log_prob": peer_protocol.median_rate(measured["timings"][name]["log_prob"],
                                              config.log_prob_batch),
        "sample": peer_protocol.median_rate(measured["timings"][name]["sample"],
                                            config.sample_count),
        "peak": measured["peak"][name],
        "setup_rss": ready["rss_after_setup_mb"],
        "params": ready["parameters"],
        "params_used": ready.get("parameters_used", ready["parameters"]),
        "bpd_first": evaluation["bpd_first"],
        "bpd_all": evaluation["bpd_all"],
        "loss_bpd": to_bpd(statistics.mean(losses[-LOSS_WINDOW:])),
    }
  n_first = measured["evaluation"]["normflows"]["n_first"]
  n_all = measured["evaluation"]["normflows"]["n_all"]
  metrics = [
      ("train", f"training images/s (steps {config.warmup_steps + 1}-{config.steps})"),
      ("warmup", f"first {config.warmup_steps} steps incl. set-up / tracing (s)"),
      ("log_prob", f"log_prob images/s (batch {config.log_prob_batch})"),
      ("sample", f"sampling images/s ({config.sample_count} samples)"),
      ("peak", "peak RSS of the process (MB)"),
      ("setup_rss", "RSS after imports, data and model set-up (MB)"),
      ("params", "trainable parameters (elements of all variables / nn.Parameters)"),
      ("params_used", "trainable parameters the model uses"),
      ("bpd_first", f"test bits/dim, first {n_first} test images"),
      ("bpd_all", f"test bits/dim, all {n_all} test images"),
      ("loss_bpd", f"final train loss as bits/dim (mean of last "
                   f"{min(LOSS_WINDOW, config.steps)} steps)"),
  ]
  columns = ["metric"] + names
  if "ours" in names:
    columns.append("ratio ours/normflows")
  rows = []
  for key, label in metrics:
    row = {"metric": label, **{name: values[name][key] for name in names}}
    if "ours" in names:
      row["ratio ours/normflows"] = values["ours"][key] / values["normflows"][key]
    rows.append(row)
  same = same_data(meta, measured)
  nf_ready = measured["ready"]["normflows"]
  nf_recipe = normflows_config(config)
  details = {
      "same_data": same, "chunk_steps": measured["chunks"],
      "images_per_s_per_chunk": {n: [round(len(t["losses"]) * config.batch / t["seconds"], 1)
                                     for t in measured["train"][n][1:]] for n in names},
      "losses": {n: [l for t in measured["train"][n] for l in t["losses"]] for n in names},
      "grad_norms": {n: [g for t in measured["train"][n] for g in t["grad_norms"]]
                     for n in names},
      "normflows_skipped_steps": sum(t["skipped"] for t in measured["train"]["normflows"]),
      "normflows_learning_rates": [r for t in measured["train"]["normflows"]
                                   for r in t["learning_rates"]],
      "log_prob_seconds": {n: [s for a in measured["timings"][n]["log_prob"] for s in a["seconds"]]
                           for n in names},
      "sample_seconds": {n: [s for a in measured["timings"][n]["sample"] for s in a["seconds"]]
                         for n in names},
      "sample_finite_fraction": {n: measured["timings"][n]["sample"][-1]["finite"]
                                 for n in names},
      "evaluation": measured["evaluation"], "normflows_worker": nf_ready,
      "normflows_recipe": nf_recipe, "config": dataclasses.asdict(config)}
  notes = describe(config, meta, measured, same, nf_ready, nf_recipe, details)
  print(results.write("peer_normflows" + result_suffix(config), results.command_line(), rows,
                      columns, notes=notes, results_dir=args.results_dir, details=details))


def describe(config, meta, measured, same, nf_ready, nf_recipe, details):
  """The notes under the table: setting, models, recipe, protocol."""
  def divergence(name):
    losses, norms = details["losses"][name], details["grad_norms"][name]
    bad = next((i + 1 for i, l in enumerate(losses) if not math.isfinite(l)), None)
    finite = [g for g in norms if math.isfinite(g)]
    return (f"{name}: " + (f"first non-finite loss at step {bad}" if bad else "all losses finite")
            + (f", largest gradient norm {max(finite):.3g} at step {norms.index(max(finite)) + 1}"
               if finite else ""))

  def recipe(r):
    text = (f"{'Adam (epsilon 1e-7)' if r['optimizer'] == 'adam' else 'Adamax'} "
            f"{config.learning_rate:g}"
            + (f", weight decay {r['weight_decay']:g}" if r["weight_decay"] else "")
            + (f", {r['lr_warmup']}-step linear warm-up" if r["lr_warmup"] else ", no warm-up")
            + (f", cosine decay to {r['lr_min_ratio']:g}x at step {config.steps}"
               if r["lr_schedule"] == "cosine" else ", then constant")
            + (f", gradients clipped to global norm {r['grad_clip_norm']:g}"
               if r["grad_clip_norm"] is not None else ", no gradient clipping")
            + (f", weight average (decay min({r['ema_decay']:g}, (1+n)/(10+n))) evaluated"
               if r["ema_decay"] > 0 else ", no weight averaging"))
    return text + (", steps with a non-finite loss skipped" if r["skip_nonfinite"] else "")

  names = list(measured["train"])
  ours_recipe = dict(nf_recipe, optimizer="adam", weight_decay=0.0, lr_warmup=config.lr_warmup,
                     lr_schedule=config.lr_schedule, ema_decay=config.ema_decay,
                     grad_clip_norm=config.grad_clip_norm, skip_nonfinite=False)
  h, w, c = meta["image_shape"]
  rates = details["images_per_s_per_chunk"]
  text = (
      f"{config.dataset} {h}x{w}x{c}, {meta['num_bins']} bins; Glow with L={config.levels}, "
      f"K={config.steps_per_level}, width {config.width}, batch {config.batch}, "
      f"{config.steps} steps. "
      + (f"Ours: build_flow(architecture='glow', split='static') in TensorFlow "
         f"(benchmarks/peer_tfp_glow.py's worker, tf.function steps), {recipe(ours_recipe)}. "
         if "ours" in names else "")
      + f"normflows {nf_ready['normflows']} on PyTorch {nf_ready['torch']} (eager, "
      f"{nf_ready['threads']} threads, OMP_WAIT_POLICY={nf_ready['omp_wait_policy']}): "
      f"MultiscaleFlow of {config.levels} levels x "
      f"{config.steps_per_level} GlowBlock(scale_map='sigmoid', split_mode='channel', "
      f"use_lu=True) + Squeeze, Merge between levels, a GlowBase (learned per-channel mean and "
      "log-scale, not conditioned on the kept half) per level (our Glow: a learned prior "
      "conditioned on the kept half at the split, N(0, 1) at the top); "
      f"{recipe(nf_recipe)} ({config.normflows_recipe} recipe). "
      + "; ".join(divergence(n) for n in names) + ". "
      f"All models train on the same exported stream (make_train_pipeline, seed "
      f"{config.seed}; batch checksums equal: "
      + ", ".join(f"{n} {'yes' if same[n] else 'NO'}" for n in names)
      + f") and are evaluated on the same {meta['test_images']} test images (one "
      f"dequantisation pass, seed {config.eval_seed}), x = (k + u)/bins in [0, 1) for both "
      "(normflows' own Glow example feeds the same range: ToTensor, Scale(255/256), "
      "Jitter(1/256), no logit), bits/dim = -(log p(x) - D log bins)/(D log 2). normflows' "
      "parameter count includes the unused triangles of its LU factors (C(C+1) per 1x1 "
      "convolution); the 'uses' row leaves them out. "
      + (f"Trained in alternating turns of {config.chunk_steps} steps (images/s per turn: "
         + "; ".join(f"{n} {rates[n]}" for n in names) + "); " if len(names) > 1 else
         f"Trained in turns of {config.chunk_steps} steps (images/s per turn: "
         f"{rates['normflows']}); ")
      + f"log_prob and sampling: median of {config.rounds} rounds x {config.repeats} calls "
      "after training (ours: tf.function; normflows: eager under torch.no_grad"
      + (", averaged weights" if nf_recipe["ema_decay"] > 0 else "")
      + "); finite fraction of the last samples: "
      + ", ".join(f"{n} {details['sample_finite_fraction'][n]:.3g}" for n in names) + ". "
      + "".join(f"Test bits/dim of {n} with its raw (not averaged) weights: "
                f"{measured['evaluation'][n]['raw_weights']['bpd_all']:.4f}. "
                for n in names if "raw_weights" in measured["evaluation"][n])
      + ("Ratio ours/normflows: higher is better for images/s, lower for bits/dim, loss, "
         "time and memory." if "ours" in names else ""))
  return text.strip()


def main():
  args, config = parse_args()
  compare(args, config)


if __name__ == "__main__":
  main()
