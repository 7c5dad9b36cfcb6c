"""Our Glow against TFP's `tfb.Glow` and normflows' (PyTorch) Glow: the peer rows, one command.

Rows (`--rows`, default all but clip1000; each trains every model of `--models` from scratch):
  best       each library with its best recipe: ours the library's default recipe (the recipe
             flags below), TFP the recipe of its own Glow example (`--tfp_recipe`), normflows
             that of its Glow example (`--normflows_recipe`);
  identical  all three with the recipe flags' recipe (default: the library's default);
  noclip     all three with the recipe of the first peer table: Adam 1e-3, 200-step warm-up,
             then constant, no clipping, no weight averaging (TFP's Glow diverged there);
  clip1000   the same with gradients clipped to global norm 1000.

Models: ours (`lcflow_tf.build_flow`, library defaults), TFP's `tfb.Glow`
(benchmarks/peers/peer_models.py; both in benchmarks/peers/peer_worker.py, a TensorFlow
worker process each) and normflows' Glow (benchmarks/peers/normflows_worker.py, in the
PyTorch venv), at matched architecture (L=2, K=8, width 128 in full runs), all trained on
one exported copy of our training stream (`peer_protocol.export_stream`: identical batches,
checksums compared) in alternating turns of `--chunk_steps`, then timed in alternating
rounds, evaluated on all test images and scored for sample quality
(`lcflow_tf.sample_quality.evaluate_sampler`, the cached Fashion-MNIST classifier, N samples
per temperature) with sample grids.

Every model of a row is recorded as soon as it is measured
(docs/results/peer_runs/<name>/<row>_<model>.json, its configuration, machine and result); a
rerun reuses every record whose configuration is the one it would train, so a crash loses at
most the models still training, and rows can be run one at a time. Throughput ratios compare
only models that trained in the same turns (each record keeps the training images/s of every
model beside it); `--partners` trains models beside the missing ones purely as that
reference, recording them under peer_runs/<name>/partners/ without replacing their own
records. The tables (benchmarks/peers/peer_report.py) are written from all matching records:
<name>.{md,json}, with reconstruction and sample-quality tables, grids in
docs/results/figures/<name>/, and our training step's profile
(profile_train_step<suffix>.{md,json}). `--figures` only draws docs/figures/peers.png from
the written table and its records.

  python benchmarks/peers/peer_glow.py              # Fashion-MNIST, 2000 steps, rows a/b/noclip
  python benchmarks/peers/peer_glow.py --rows best  # one row
  python benchmarks/peers/peer_glow.py --rows identical --models normflows --partners ours
  python benchmarks/peers/peer_glow.py --quick      # 200 steps, 1000 samples per temperature
  python benchmarks/peers/peer_glow.py --smoke      # 8x8 digits, tiny models (the test)
  python benchmarks/peers/peer_glow.py --figures    # docs/figures/peers.png, no training
"""

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.common import figures  # pylint: disable=g-import-not-at-top
from benchmarks.common import procs
from benchmarks.common import results
from benchmarks.peers import peer_protocol
from benchmarks.peers import peer_report
from benchmarks.peers import records
from lcflow_tf import cli

DEFAULT_ROWS = ("best", "identical", "noclip")
RECIPE_CHOICES = ("example", "identical")
HERE = os.path.dirname(os.path.abspath(__file__))
TF_WORKER = os.path.join(HERE, "peer_worker.py")
TORCH_WORKER = os.path.join(HERE, "normflows_worker.py")
TORCH_PYTHON_ENV = "LCFLOW_TORCH_PYTHON"
DEFAULT_TORCH_PYTHON = os.path.join(ROOT, ".venv-torch", "bin", "python")
EVAL_BATCH = 256
TEMPERATURES = (0.5, 0.7, 0.85, 1.0)
GRID_IMAGES = 64
# The first peer table's recipe (the noclip and clip1000 rows).
FIRST_TABLE = dict(lr_schedule="constant", ema_decay=0.0, grad_clip_norm=None)
# TFP publishes no training recipe for tfb.Glow: the example in its docstring
# (tensorflow_probability/python/bijectors/glow.py) builds the model and samples, and
# glow_test.py trains nothing. Where TFP's own bijector docstrings train a flow
# (bijectors/masked_autoregressive.py, the AutoregressiveNetwork examples), they compile with
# `tf_keras.optimizers.Adam()` at its defaults: learning rate 1e-3, no warm-up, schedule,
# clipping or averaging. That is TFP's recipe in the best row. (The Glow paper's reference
# code, openai/glow train.py and optim.py, whose architecture TFP's defaults replicate, uses
# Adamax 1e-3 with a 10-epoch linear warm-up, 9,375 steps at batch 64 on 60,000 images, i.e.
# longer than the whole 2000-step run, and a Polyak average that its evaluation does not swap
# in: the polyak_swap calls are commented out.)
TFP_EXAMPLE = peer_protocol.Recipe(optimizer="adam", learning_rate=1e-3, lr_warmup=0,
                                   lr_schedule="constant", ema_decay=0.0, grad_clip_norm=None)
# normflows' Glow example (examples/glow_colab.ipynb): Adamax(lr=1e-3, weight_decay=1e-5),
# no warm-up, clipping or averaging, steps with a non-finite loss skipped.
NORMFLOWS_EXAMPLE = peer_protocol.Recipe(optimizer="adamax", learning_rate=1e-3,
                                         weight_decay=1e-5, lr_warmup=0,
                                         lr_schedule="constant", ema_decay=0.0,
                                         grad_clip_norm=None, skip_nonfinite=True)

MODES = {
    "full": dict(dataset="fashion_mnist", steps=2000, levels=2, steps_per_level=8, width=128,
                 batch=64, chunk_steps=100, warmup_steps=20, rounds=5, repeats=5,
                 log_prob_batch=256, sample_count=64, reconstruction_samples=1024,
                 quality_samples=10000, quality_batch=500, profile_steps=(20, 5)),
    "quick": dict(dataset="fashion_mnist", steps=200, levels=2, steps_per_level=8, width=128,
                  batch=64, chunk_steps=45, warmup_steps=20, rounds=3, repeats=3,
                  log_prob_batch=256, sample_count=64, reconstruction_samples=256,
                  quality_samples=1000, quality_batch=500, profile_steps=(10, 3)),
    "smoke": dict(dataset="digits", steps=4, levels=2, steps_per_level=1, width=8, batch=8,
                  chunk_steps=1, warmup_steps=2, rounds=1, repeats=2, log_prob_batch=16,
                  sample_count=4, reconstruction_samples=64, quality_samples=32,
                  quality_batch=500, profile_steps=(2, 2)),
}
_SIZE_FLAGS = ("steps", "levels", "steps_per_level", "width", "batch", "chunk_steps",
               "warmup_steps", "quality_samples")


@dataclasses.dataclass(frozen=True)
class Config:
  """One invocation: sizes (a `MODES` entry, flags override), recipes, rows and models."""
  mode: str
  dataset: str
  steps: int
  levels: int
  steps_per_level: int
  width: int
  batch: int
  chunk_steps: int
  warmup_steps: int
  rounds: int
  repeats: int
  log_prob_batch: int
  sample_count: int
  reconstruction_samples: int
  quality_samples: int
  quality_batch: int
  profile_steps: tuple
  recipe: peer_protocol.Recipe     # the identical row's, and ours' in the best row
  tfp_recipe: str
  normflows_recipe: str
  rows: tuple
  models: tuple
  partners: tuple
  temperatures: tuple
  seed: int
  eval_seed: int
  jit: bool
  torch_threads: int
  profile: bool

  def recipes(self, row):
    """model -> the `Recipe` it trains with in `row`."""
    if row == "best":
      return {"ours": self.recipe,
              "tfp": TFP_EXAMPLE if self.tfp_recipe == "example" else self.recipe,
              "normflows": (NORMFLOWS_EXAMPLE if self.normflows_recipe == "example"
                            else self.recipe)}
    if row == "identical":
      return dict.fromkeys(records.MODELS, self.recipe)
    first = dataclasses.replace(self.recipe, **FIRST_TABLE)
    if row == "clip1000":
      first = dataclasses.replace(first, grad_clip_norm=1000.0)
    return dict.fromkeys(records.MODELS, first)

  def worker_config(self, model, row):
    """The settings a worker of `model` in `row` gets (JSON), also the key of its record."""
    settings = {"kind": model, "levels": self.levels, "steps_per_level": self.steps_per_level,
                "width": self.width, "seed": self.seed, "steps": self.steps,
                "recipe": dataclasses.asdict(self.recipes(row)[model]),
                "log_prob_batch": self.log_prob_batch, "sample_count": self.sample_count,
                "eval_batch": EVAL_BATCH}
    if model == "normflows":
      settings["threads"] = self.torch_threads
    elif model == "ours":
      settings["jit"] = self.jit
      settings["scale_fn"] = default_scale_fn()  # records of another scale are not reused
    return settings


def default_scale_fn():
  """The scale function of the library's Glow (`lcflow_tf.flows.FlowConfig`)."""
  from lcflow_tf import flows  # pylint: disable=g-import-not-at-top
  return flows.FlowConfig().resolved_scale_fn


def library_recipe():
  """The library's default training recipe (`lcflow_tf.config.TrainConfig`) as a `Recipe`."""
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  defaults = config_lib.TrainConfig()
  return peer_protocol.Recipe(
      learning_rate=defaults.learning_rate, lr_warmup=defaults.warmup_steps,
      lr_schedule=defaults.lr_schedule, lr_min_ratio=defaults.lr_min_ratio,
      ema_decay=defaults.ema_decay, grad_clip_norm=defaults.grad_clip_norm or None)


def _names(value, allowed, flag):
  names = tuple(v for v in value.split(",") if v)
  bad = [n for n in names if n not in allowed]
  if bad or not names:
    raise ValueError(f"--{flag} must be a comma-separated subset of {', '.join(allowed)}, got "
                     f"{value!r}")
  return tuple(n for n in allowed if n in names)


def _clip_norm(value):
  return None if value.lower() in ("none", "0") else float(value)


def _add_flags(parser):
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--quick", action="store_true", help="200 steps (quick check)")
  mode.add_argument("--smoke", action="store_true",
                    help="tiny models on 8x8 digits, a few steps (seconds; for the tests)")
  parser.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                      help=f"comma-separated, from {', '.join(records.ROWS)}")
  parser.add_argument("--models", default=",".join(records.MODELS),
                      help=f"comma-separated, from {', '.join(records.MODELS)}")
  parser.add_argument("--partners", default="",
                      help="comma-separated models (not in --models) trained beside the "
                           "missing ones only as the throughput reference; recorded under "
                           "partners/, never replacing their own records (no sample quality)")
  for key in _SIZE_FLAGS:
    parser.add_argument(f"--{key}", type=int, help="override the mode's value")
  defaults = library_recipe()
  parser.add_argument("--learning_rate", type=float, default=defaults.learning_rate,
                      help="peak learning rate of the recipe")
  parser.add_argument("--lr_warmup", type=int, default=defaults.lr_warmup,
                      help="steps of linear warm-up")
  parser.add_argument("--lr_schedule", choices=peer_protocol.SCHEDULES,
                      default=defaults.lr_schedule, help="after the warm-up")
  parser.add_argument("--lr_min_ratio", type=float, default=defaults.lr_min_ratio,
                      help="floor of the decaying schedules, a fraction of the peak")
  parser.add_argument("--ema_decay", type=float, default=defaults.ema_decay,
                      help="weight average evaluated after training (0: none)")
  parser.add_argument("--grad_clip_norm", type=_clip_norm, default=defaults.grad_clip_norm,
                      help="clip gradients to this global norm ('none': no clipping)")
  parser.add_argument("--tfp_recipe", choices=RECIPE_CHOICES, default="example",
                      help="TFP's recipe in the best row: its example's, or the identical one")
  parser.add_argument("--normflows_recipe", choices=RECIPE_CHOICES, default="example",
                      help="normflows' recipe in the best row")
  parser.add_argument("--temperatures", default=",".join(f"{t:g}" for t in TEMPERATURES),
                      help="sampling temperatures of the sample-quality columns")
  parser.add_argument("--classifier_dir", default=None,
                      help="feature classifier cache (default: the user cache of the dataset)")
  parser.add_argument("--classifier_steps", type=int, default=None,
                      help="training steps of a classifier trained now (default: the "
                           "library's ClassifierConfig)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the data stream and of the models' initialisation")
  parser.add_argument("--eval_seed", type=int, default=1234,
                      help="seed of the test set's dequantisation noise and of the samples")
  parser.add_argument("--jit", action="store_true", help="XLA-compile our model (not TFP's)")
  parser.add_argument("--no_profile", action="store_true",
                      help="skip profiling our training step")
  parser.add_argument("--torch_python", default=None,
                      help=f"Python of the PyTorch venv (default: ${TORCH_PYTHON_ENV}, else "
                           ".venv-torch/bin/python of this checkout)")
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="PyTorch intra-op threads (0: PyTorch's default, one per core)")
  parser.add_argument("--name", default=None,
                      help="results name (default: peer_glow + mode + non-default recipe)")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--figures", action="store_true",
                      help=f"only draw {peer_report.FIGURE} from the written table <name>.json "
                           "in --results_dir and its records (trains nothing)")
  parser.add_argument("--figures_dir", default=None, help="default docs/figures")
  parser.add_argument("--stream_dir", default=None,
                      help="where the exported stream's temporary directory goes")


def parse_args(argv=None):
  """(args, Config); bad values end the program with a usage error naming the flag."""
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
  _add_flags(parser)
  args = parser.parse_args(argv)
  mode = "smoke" if args.smoke else "quick" if args.quick else "full"
  settings = dict(MODES[mode])
  for key in _SIZE_FLAGS:
    if getattr(args, key) is not None:
      settings[key] = getattr(args, key)
  try:
    for key in _SIZE_FLAGS:
      if settings[key] < (2 if key == "quality_samples" else 1):
        raise ValueError(f"--{key} must be an int >= 1 (quality_samples >= 2), got "
                         f"{settings[key]!r}")
    if settings["warmup_steps"] >= settings["steps"]:
      raise ValueError(f"--warmup_steps ({settings['warmup_steps']}) must be below --steps "
                       f"({settings['steps']}): the training throughput is timed after them")
    if args.torch_threads < 0:
      raise ValueError(f"--torch_threads must be >= 0, got {args.torch_threads!r}")
    temperatures = tuple(float(t) for t in args.temperatures.split(",") if t)
    if not temperatures or any(not 0 <= t < float("inf") for t in temperatures):
      raise ValueError(f"--temperatures must be numbers >= 0, got {args.temperatures!r}")
    recipe = peer_protocol.Recipe(
        learning_rate=args.learning_rate, lr_warmup=args.lr_warmup,
        lr_schedule=args.lr_schedule, lr_min_ratio=args.lr_min_ratio,
        ema_decay=args.ema_decay, grad_clip_norm=args.grad_clip_norm)
    models = _names(args.models, records.MODELS, "models")
    partners = _names(args.partners, records.MODELS, "partners") if args.partners else ()
    if set(partners) & set(models):
      raise ValueError(f"--partners must not repeat --models, got {args.partners!r} and "
                       f"{args.models!r}")
    config = Config(mode=mode, recipe=recipe, tfp_recipe=args.tfp_recipe,
                    normflows_recipe=args.normflows_recipe,
                    rows=_names(args.rows, records.ROWS, "rows"), models=models,
                    partners=partners,
                    temperatures=temperatures,
                    seed=args.seed, eval_seed=args.eval_seed, jit=args.jit,
                    torch_threads=args.torch_threads, profile=not args.no_profile, **settings)
  except ValueError as e:
    parser.error(str(e).replace("Recipe: ", "--"))
  return args, config


_NAME_TAGS = {"learning_rate": "lr", "lr_warmup": "warmup", "lr_schedule": "",
              "lr_min_ratio": "lrmin", "ema_decay": "ema", "grad_clip_norm": "clip"}


def result_name(config):
  """peer_glow + _quick/_smoke + what differs from the default recipe and recipe choices.

  E.g. `peer_glow_quick_constant_ema0_clipnone` for `--quick --lr_schedule constant
  --ema_decay 0 --grad_clip_norm none`.
  """
  default = library_recipe()
  differs = [f"_{tag}{getattr(config.recipe, field):g}" if isinstance(
      getattr(config.recipe, field), (int, float)) else
             f"_{tag}{str(getattr(config.recipe, field)).lower()}"
             for field, tag in _NAME_TAGS.items()
             if getattr(config.recipe, field) != getattr(default, field)]
  return ("peer_glow" + {"full": "", "quick": "_quick", "smoke": "_smoke"}[config.mode]
          + "".join(differs)
          + ("_tfpidentical" if config.tfp_recipe == "identical" else "")
          + ("_nfidentical" if config.normflows_recipe == "identical" else "")
          + ("_jit" if config.jit else ""))


def torch_python(args):
  """The PyTorch venv's Python: --torch_python, $LCFLOW_TORCH_PYTHON, or .venv-torch."""
  return args.torch_python or os.environ.get(TORCH_PYTHON_ENV) or DEFAULT_TORCH_PYTHON


def start_worker(model, stream, settings, python, label):
  """A `procs.Worker` for `model` on `stream` with worker `settings` (a dict): normflows'
  PyTorch worker in the `python` venv, else the TensorFlow worker; `label` names it in logs."""
  if model == "normflows":
    return procs.Worker(TORCH_WORKER, ["--stream", stream, "--config", json.dumps(settings)],
                        label, python=python, env=torch_env())
  return procs.Worker(TF_WORKER, ["--stream", stream, "--config", json.dumps(settings)], label)


def torch_env():
  """Environment of the PyTorch worker: OpenMP threads that sleep instead of spinning.

  PyTorch's OpenMP threads spin while they wait; on the shared 2-core machine (load ~8,
  2026-11-30, an ad-hoc check) that made a training step of the full-size model ~6x slower
  with 2 threads (15 s) than with 1 (2.5 s), while with OMP_WAIT_POLICY=PASSIVE 2 threads
  took about as long as 1. A value already set in the environment is kept.
  """
  return {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


# ------------------------------------------------------------------------- one row


class Run:
  """The shared state of an invocation: stream, classifier, where results go."""

  def __init__(self, args, config):
    self.args, self.config = args, config
    self.name = args.name or result_name(config)
    self.results_dir = args.results_dir or results.RESULTS_DIR
    self.records_dir = os.path.join(self.results_dir, "peer_runs", self.name)
    self.figures_dir = os.path.join(self.results_dir, "figures", self.name)
    self.python = torch_python(args)
    self.stream = None
    self.meta = None
    self.quality = None
    self.profiled = False

  def start_workers(self, row, models):
    workers = {model: start_worker(model, self.stream, self.config.worker_config(model, row),
                                   self.python, f"{row}/{model}") for model in models}
    for model, worker in workers.items():
      print(f"[{row}/{model}] ready: {worker.ready}", flush=True)
    return workers

  def run_row(self, row, models, partners=()):
    """Trains and measures `models` (and `partners`) in `row` side by side; records each."""
    config = self.config
    alongside = tuple(m for m in records.MODELS if m in models or m in partners)
    workers = self.start_workers(row, alongside)
    try:
      chunks = peer_protocol.chunk_plan(config.steps, config.warmup_steps, config.chunk_steps)
      train = peer_protocol.alternate_training(workers, chunks, config.batch, config.steps)
      rates = {m: peer_protocol.training_rate(train[m], config.batch) for m in alongside}
      timings = {m: {what: [] for what in ("log_prob", "sample", "sample_and_log_prob")}
                 for m in alongside}
      for r in range(config.rounds):
        for model in (alongside if r % 2 == 0 else alongside[::-1]):
          for what in timings[model]:
            timings[model][what].append(workers[model].request(
                "time", what=what, repeats=config.repeats))
      for model in alongside:
        self.finish(row, model, workers[model], chunks, train[model], timings[model],
                    alongside, rates, partner=model in partners)
    finally:
      for worker in workers.values():
        worker.kill()

  def finish(self, row, model, worker, chunks, train, timings, alongside, rates, partner=False):
    """Evaluates one trained model, writes its record (a partner's: no sample quality)."""
    config = self.config
    evaluation = worker.request("evaluate")
    reconstruction = worker.request("reconstruction", samples=config.reconstruction_samples)
    peak = worker.request("peak_rss")["peak_rss_mb"]
    quality = None if partner else self.sample_quality(row, model, worker)
    if model == "ours" and config.profile and not self.profiled and not partner:
      profile = worker.request("profile", timed_steps=config.profile_steps[0],
                               traced_steps=config.profile_steps[1])
      peer_report.write_profile(self, row, profile)
      self.profiled = True
    worker.close()
    result = {"ready": worker.ready, "chunks": chunks, "train": train, "timings": timings,
              "evaluation": evaluation, "reconstruction": reconstruction, "peak_rss_mb": peak,
              "sample_quality": quality, "alongside": list(alongside),
              "rates_alongside": rates,
              "same_data": same_data(self.meta, chunks, train, evaluation)}
    path = records.record_path(self.records_dir, model, row, alongside if partner else None)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    results.write_json(path, {
        "config": records.record_key(config, model, row), "command": results.command_line(),
        "machine": results.machine(), "result": result})
    print(f"[{row}/{model}] recorded{' (partner)' if partner else ''}: test bits/dim "
          f"{evaluation['bpd_all']:.4f}", flush=True)

  def sample_quality(self, row, model, worker):
    """Frechet distance per temperature (worker's samples, classifier here) and grids."""
    from lcflow_tf import sample_quality  # pylint: disable=g-import-not-at-top
    from lcflow_tf import viz  # pylint: disable=g-import-not-at-top
    dataset, arrays, classifier = self.quality
    first = {}

    def sample_fn(n, temperature, seed):
      path = os.path.join(self.stream, f"samples_{model}.npy")
      worker.request("samples", n=n, temperature=temperature, seed=seed, path=path)
      x = np.load(path)
      os.remove(path)
      first.setdefault(temperature, x[:GRID_IMAGES])
      return x

    result = sample_quality.evaluate_sampler(
        sample_fn, dataset, self.config.temperatures, self.config.quality_samples,
        seed=self.config.eval_seed, batch_size=self.config.quality_batch,
        classifier=classifier, arrays=arrays)
    result["grids"] = {}
    for t, x in first.items():
      path = os.path.join(self.figures_dir, f"{row}_{model}_t{t:.2f}.png")
      viz.save_png(viz.samples_to_grid(x, dataset.num_bins), path)
      result["grids"][f"{t:g}"] = os.path.relpath(path, self.results_dir)
    return result

  def prepare(self, needed):
    """Exports the stream and loads the classifier (only when something is to train)."""
    from lcflow_tf import data  # pylint: disable=g-import-not-at-top
    from lcflow_tf import sample_quality  # pylint: disable=g-import-not-at-top
    config = self.config
    training = {m for _, models in needed for m in models} | set(config.partners)
    if "normflows" in training and not os.path.isfile(self.python):
      cli.fail(f"no PyTorch Python at {self.python}; install the peer venv "
               f"(docs/questions/peers.md) or pass --torch_python / set ${TORCH_PYTHON_ENV}, or "
               "leave normflows out (--models ours,tfp)")
    dataset = data.load_dataset(config.dataset)
    arrays = sample_quality.load_arrays(dataset)
    classifier_config = (sample_quality.ClassifierConfig(steps=self.args.classifier_steps)
                         if self.args.classifier_steps else None)
    try:
      classifier = sample_quality.load_or_train(dataset, self.args.classifier_dir,
                                                classifier_config, arrays=arrays)
    except ValueError as e:
      cli.fail(str(e))
    self.quality = (dataset, arrays, classifier)
    self.stream = tempfile.mkdtemp(prefix="peer_stream_", dir=self.args.stream_dir)
    print(f"exporting {config.steps} training batches and the test set to {self.stream}",
          flush=True)
    self.meta = peer_protocol.export_stream(self.stream, config.dataset, config.batch,
                                            config.steps, config.seed, config.eval_seed)


def same_data(meta, chunks, train, evaluation):
  """Did the model train on the exported batches and evaluate the exported test set?"""
  bounds = [i for first, last in peer_protocol.chunk_bounds(chunks)
            for i in ((first,) if first == last else (first, last))]
  got = [c for turn in train for c in turn["checksums"]]
  return (got == [[i, meta["checksums"][i]] for i in bounds]
          and evaluation["test_checksum"] == meta["test_checksum"])


def main():
  args, config = parse_args()
  if args.figures:
    path = peer_report.write_figure(args.results_dir or results.RESULTS_DIR,
                                    args.name or result_name(config),
                                    args.figures_dir or figures.FIGURES_DIR,
                                    results.command_line())
    print(f"wrote {path}")
    return
  run = Run(args, config)
  needed = []
  for row in config.rows:
    missing = [m for m in config.models
               if records.stored_record(run.records_dir, config, m, row) is None]
    if len(missing) < len(config.models):
      reused = [m for m in config.models if m not in missing]
      print(f"[{row}] reusing the records of {', '.join(reused)} in {run.records_dir}",
            flush=True)
    if missing:
      needed.append((row, missing))
  if config.partners and not needed:
    print(f"--partners {','.join(config.partners)}: nothing to train beside them (every record "
          "is reused), so no partner trained", flush=True)
  if needed:
    run.prepare(needed)
    try:
      for row, models in needed:
        run.run_row(row, models, config.partners)
    finally:
      shutil.rmtree(run.stream, ignore_errors=True)
  print(peer_report.write(run))


if __name__ == "__main__":
  main()
