"""How a training recipe learns, step by step: loss spikes, clipping, held-out bits/dim.

Trains the ablation's Glow (Fashion-MNIST by default; static split, `benchmarks/split/ablation.py`'s
sizes and the library's default recipe) once per variant, each a set of `TrainConfig`
overrides, with the same seed, data and initialisation, and records
  * every step's training loss and gradient norm (before clipping): the median and largest
    norm, the share of steps that `--grad_clip_norm` clipped, and the loss spikes (steps whose
    bits/dim exceed the median of the 50 steps before them by more than `SPIKE` bits/dim);
  * every `--eval_every` steps, held-out bits/dim on the first `--eval_images` test images (one
    dequantisation pass, the ablation's seed) with the trained weights, with the run's weight
    averages (when it keeps them) and with extra averages of the decays in `--ema_decays`,
    updated beside the training (the library's `WeightAverage`, its warm-started decay).
The variants stop after `--steps`; their learning-rate schedules still run to `train_steps`
(2000), so a short trace is the start of the full run, not a compressed one.
Writes docs/results/<--name>.{json,md} (the per-step traces in the JSON). `--figures` only
draws docs/figures/training_curves.png from the record <--name>.json: per variant, training
bits/dim per step, held-out bits/dim at every evaluation and the gradient norm per step.

  python benchmarks/numerics/training_trace.py --variants "default:;noclip:grad_clip_norm=1e9" \
      --steps 400
  python benchmarks/numerics/training_trace.py --figures --name training_trace_peer_noclip
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.common import figures  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation

SPIKE = 0.5  # bits/dim above the median of the previous SPIKE_WINDOW steps
SPIKE_WINDOW = 50
FIGURE = "training_curves.png"  # `--figures`, in docs/figures/


def parse_variants(text):
  """`"name:key=value,key=value;name2:"` -> {name: {key: value}} (values parsed as JSON)."""
  variants = {}
  for part in (p for p in text.split(";") if p.strip()):
    name, _, body = part.partition(":")
    overrides = {}
    for item in (i for i in body.split(",") if i.strip()):
      key, sep, value = item.partition("=")
      if not sep or not key.strip():
        raise ValueError(f"variant {name!r}: expected key=value, got {item!r}")
      try:
        overrides[key.strip()] = json.loads(value)
      except ValueError:
        overrides[key.strip()] = value.strip()
    if not name.strip() or name.strip() in variants:
      raise ValueError(f"variant names must be non-empty and distinct, got {name!r}")
    variants[name.strip()] = overrides
  if not variants:
    raise ValueError("no variant given")
  return variants


def spikes(bits_per_dim):
  """Steps (1-based) whose bits/dim exceed the median of the previous SPIKE_WINDOW by SPIKE."""
  out = []
  for i in range(SPIKE_WINDOW, len(bits_per_dim)):
    if bits_per_dim[i] > statistics.median(bits_per_dim[i - SPIKE_WINDOW:i]) + SPIKE:
      out.append(i + 1)
  return out


def summarize(name, bits_per_dim, norms, evals, clip_norm, seconds):
  """One table row from a variant's trace."""
  spike_steps = spikes(bits_per_dim)
  last = max(evals) if evals else None
  row = {"variant": name, "steps": len(bits_per_dim),
         "grad norm median": statistics.median(norms), "grad norm max": max(norms),
         "clipped steps": sum(n > clip_norm for n in norms) / len(norms),
         "loss spikes": len(spike_steps),
         "train bpd, last 50 steps": statistics.mean(bits_per_dim[-50:]),
         "seconds": seconds}
  for step, values in sorted(evals.items()):
    for weights, value in values.items():
      row[f"held-out bpd @{step} ({weights})"] = value
  if last is not None:
    row["held-out bpd, last (raw)"] = evals[last]["raw"]
  return row, spike_steps


def trace(dataset, overrides, steps, eval_every, eval_images, ema_decays, workdir):
  """Trains one variant in this process; returns (bits/dim per step, norms, evals, clip)."""
  from lcflow_tf import averaging  # pylint: disable=g-import-not-at-top
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
  from lcflow_tf import training  # pylint: disable=g-import-not-at-top
  sizes = {**ablation.SIZES[dataset], **ablation.default_recipe("glow")}
  cfg = ablation.run_config(sizes, dataset, "glow", "static", False, 0)
  cfg.update(overrides, checkpoint_every=10 ** 9, log_every=10 ** 9)
  config = config_lib.TrainConfig.from_flags(**cfg)
  trainer = training.Trainer(config, tempfile.mkdtemp(dir=workdir))
  with trainer.strategy.scope():
    extra = {d: averaging.WeightAverage(trainer.flow.trainable_variables, d) for d in ema_decays}
  test = trainer.dataset.test().take(eval_images)

  def held_out():
    return round(evaluation.held_out_bits_per_dim(trainer.flow, test, trainer.num_bins,
                                                  seed=ablation.EVAL_SEED)["bits_per_dim"], 4)

  iterator = trainer.distributed_iterator()
  bits_per_dim, norms, evals = [], [], {}
  while trainer.step < min(steps, config.train_steps):
    loss, norm, finite, _ = trainer.train_step(next(iterator))
    bits_per_dim.append(trainer.bits_per_dim(loss))
    norms.append(norm)
    if finite:
      for average in extra.values():
        average.update()
    if trainer.step % eval_every == 0:
      row = {"raw": held_out()}
      if trainer.averages is not None:
        with trainer.averaged_weights():
          row[f"ema {config.ema_decay:g}"] = held_out()
      for decay, average in extra.items():
        with average.swapped():
          row[f"ema {decay:g}"] = held_out()
      evals[trainer.step] = row
      print(f"step {trainer.step}: held-out {row}, train {bits_per_dim[-1]:.3f}", flush=True)
  return bits_per_dim, norms, evals, config.grad_clip_norm


def trailing_median(values, window=SPIKE_WINDOW):
  """[median of values[max(0, i - window + 1):i + 1] for each i]: the curve spikes rise from."""
  return [statistics.median(values[max(0, i - window + 1):i + 1]) for i in range(len(values))]


def draw_figure(details, path, footer):
  """The traces of a record's `details` (its variants): bits/dim above, gradient norm below.

  Per variant: training bits/dim of every step (faint) and its trailing median over
  `SPIKE_WINDOW` steps, held-out bits/dim at every evaluation (one marker per set of
  weights: raw, each weight average), the loss spikes (`spikes`) as ticks, and the gradient
  norm per step before clipping (log scale). Writes the PNG to `path`.
  """
  fig, axes = figures.new(2, 1, height=6.6, sharex=True,
                          gridspec_kw={"height_ratios": (2.2, 1.0)})
  bits, norms = axes[:, 0]
  markers = "os^vD"
  for color, (variant, trace_) in zip(figures.COLORS, details.items()):
    steps = range(1, len(trace_["bits_per_dim"]) + 1)
    bits.plot(steps, trace_["bits_per_dim"], color=color, alpha=0.25, linewidth=0.6)
    bits.plot(steps, trailing_median(trace_["bits_per_dim"]), color=color, linewidth=1.4,
              label=f"{variant}: training, median of the last {SPIKE_WINDOW} steps")
    evals = sorted((int(step), values) for step, values in trace_["evals"].items())
    weights = list(dict.fromkeys(w for _, values in evals for w in values))
    for marker, w in zip(markers, weights):
      points = [(step, values[w]) for step, values in evals if w in values]
      bits.plot([s for s, _ in points], [v for _, v in points], marker=marker, color=color,
                linestyle="--", linewidth=0.8, markersize=4.5, markerfacecolor="white",
                label=f"{variant}: held-out, {'trained' if w == 'raw' else w} weights")
    spike_steps = trace_.get("spike_steps", [])
    if spike_steps:
      bits.plot(spike_steps, [trace_["bits_per_dim"][s - 1] for s in spike_steps], "|",
                color="black", markersize=8,
                label=f"{variant}: loss spikes (> {SPIKE:g} above the median)")
    norms.plot(steps, trace_["grad_norms"], color=color, linewidth=0.6, label=variant)
  bits.set_ylabel("bits/dim")
  bits.set_title("Training and held-out bits/dim by step")
  bits.legend(loc="upper right")
  norms.set_yscale("log")
  norms.set_ylabel("gradient norm\n(before clipping)")
  norms.set_xlabel("training step")
  return figures.save(fig, path, footer)


def write_figure(results_dir, name, figures_dir, command):
  """Draws `FIGURE` into `figures_dir` from the record <name>.json in `results_dir`."""
  with open(os.path.join(results_dir, f"{name}.json")) as f:
    record = json.load(f)
  footer = (f"{command}\nRecord: docs/results/{name}.json of {record['machine']['date']} "
            f"({record['command']}). {record['notes']}")
  return draw_figure(record["details"], os.path.join(figures_dir, FIGURE), footer)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variants", default="default:",
                      help='"name:key=value,...;name2:..." (TrainConfig flag names)')
  parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(ablation.SIZES))
  parser.add_argument("--steps", type=int, default=400, help="steps traced per variant")
  parser.add_argument("--eval_every", type=int, default=100)
  parser.add_argument("--eval_images", type=int, default=2000)
  parser.add_argument("--ema_decays", default="", help="extra averages, e.g. 0.99,0.995")
  parser.add_argument("--name", default="training_trace")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--figures", action="store_true",
                      help=f"only draw {FIGURE} from the record <--name>.json in --results_dir "
                           "(trains nothing)")
  parser.add_argument("--figures_dir", default=None, help="default docs/figures")
  args = parser.parse_args()
  if args.figures:
    from benchmarks.common import results  # pylint: disable=g-import-not-at-top
    path = write_figure(args.results_dir or results.RESULTS_DIR, args.name,
                        args.figures_dir or figures.FIGURES_DIR, results.command_line())
    print(f"wrote {path}")
    return
  try:
    variants = parse_variants(args.variants)
    ema_decays = [float(d) for d in args.ema_decays.split(",") if d]
  except ValueError as e:
    parser.error(str(e))
  for flag, value in (("--steps", args.steps), ("--eval_every", args.eval_every),
                      ("--eval_images", args.eval_images)):
    if value < 1:
      parser.error(f"{flag} must be >= 1, got {value}")
  if not all(0 < d < 1 for d in ema_decays):
    parser.error(f"--ema_decays must lie in (0, 1), got {args.ema_decays!r}")
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  rows, details = [], {}
  with tempfile.TemporaryDirectory() as workdir:
    for name, overrides in variants.items():
      start = time.time()
      try:
        bpd, norms, evals, clip = trace(args.dataset, overrides, args.steps, args.eval_every,
                                        args.eval_images, ema_decays, workdir)
      except (ValueError, TypeError) as e:
        parser.error(f"variant {name!r}: {e}")
      row, spike_steps = summarize(name, bpd, norms, evals, clip, time.time() - start)
      rows.append(row)
      details[name] = {"overrides": overrides, "bits_per_dim": bpd, "grad_norms": norms,
                       "evals": evals, "spike_steps": spike_steps}
  columns = list(dict.fromkeys(c for row in rows for c in row))
  notes = (f"{args.dataset} Glow of benchmarks/split/ablation.py (static split, seed 0), the "
           f"library's default recipe plus each variant's overrides: "
           + "; ".join(f"`{n}`: {o or 'none'}" for n, o in variants.items())
           + f". Held-out: the first {args.eval_images} test images, one dequantisation pass "
           f"(seed {ablation.EVAL_SEED}). Clipped steps: the share of steps whose gradient norm "
           f"exceeded the variant's grad_clip_norm. Spikes: steps more than {SPIKE} bits/dim "
           f"above the median of the {SPIKE_WINDOW} before.")
  print(results.write(args.name, results.command_line(), rows, columns, notes=notes,
                      results_dir=args.results_dir, details=details))


if __name__ == "__main__":
  main()
