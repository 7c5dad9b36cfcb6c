"""The split study of issue 14: does a data-chosen split beat the static one, paired by seed?

Pre-registered plan: docs/questions/does-the-lc-split-help.md, "The plan as registered".
For each setting, architecture, row and seed, trains one model with `lcflow_tf.training` (the
library's default recipe of 2026-11-30, pinned as `RECIPE`, the same architecture and total
step budget in every row; the pilots count against it) and records its test bits/dim on every
held-out image (one dequantisation pass, seed `ablation.EVAL_SEED`) and, for the Fashion-MNIST
settings, the sample-quality distance (`lcflow_tf.sample_quality`, Frechet distance on a
classifier's features) of its samples at temperatures 0.7 and 1.0.

Rows (`ROWS`): `static`; `lc@nosplit`, `logdet@nosplit`, `lc_reverse@nosplit`,
`logdet_reverse@nosplit` (the confound-free pilot, `lcflow_tf.lc`); `lc@static` (the old
protocol, as a reference); `static@nosplit` (the budget-matched control: the static split
trained through the nosplit pilots, `TrainConfig.budget_matched_control`, so its model trains
the same steps from the same point of the budget as the `*@nosplit` rows). Settings (`SETTINGS`):
  fashion_l2    (a) Fashion-MNIST, Glow L=2 K=4 width 64, 2000 steps, 8 seeds
  fashion32_l3  (b) Fashion-MNIST zero-padded to 32x32, Glow L=3 K=4 width 64, 3000 steps,
                    6 seeds
  digits_l3     (c) digits, Glow and RealNVP L=3 K=4 width 64, 2000 steps, 8 seeds

Statistic (the decision of the plan): per row, the paired difference to `static` by seed (same
initialisation seed and data order): mean, 95% Student-t interval, and on how many seeds the
row is lower. Every run leaves a record under docs/results/split_study_runs/<setting>/
(configuration, machine, result); a rerun reuses every record of the same configuration and
trains only what is missing, so the study can span several sittings (`ablation.py`'s
machinery). Writes docs/results/split_study_<setting>[_quick].{md,json} and LC heatmaps of the
seed-0 runs under docs/results/figures/.

  python benchmarks/split/split_study.py --setting fashion_l2
  python benchmarks/split/split_study.py --setting fashion32_l3
  python benchmarks/split/split_study.py --setting digits_l3
  python benchmarks/split/split_study.py --quick  # digits, Glow L=3 K=2 w32, 600 steps, seed 0
  python benchmarks/split/split_study.py --smoke  # as --quick at K=1 w8, batch 16, 8 steps (tests)
"""

import argparse
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.common import figures  # pylint: disable=g-import-not-at-top
from benchmarks.common import intervals  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top

# label: (split rule, pilot protocol); `static@nosplit` is `budget_matched_control`
ROWS = {
    "static": ("static", "nosplit"),
    "lc@nosplit": ("lc", "nosplit"),
    "logdet@nosplit": ("logdet", "nosplit"),
    "lc_reverse@nosplit": ("lc_reverse", "nosplit"),
    "logdet_reverse@nosplit": ("logdet_reverse", "nosplit"),
    "lc@static": ("lc", "static"),
    "static@nosplit": ("static", "nosplit"),
}
CONTROL_ROWS = ("static@nosplit",)
CONTROL_COLUMN = f"vs {CONTROL_ROWS[0]} (95% CI)"
_COMMON = dict(steps_per_level=4, hidden_channels=64, lc_pilot_steps=300, batch_size=64,
               learning_rate=1e-3, warmup_steps=200)
# Fixed before any study run (docs/questions/does-the-lc-split-help.md); never tuned on test
# results.
SETTINGS = {
    "fashion_l2": dict(dataset="fashion_mnist", architectures=("glow",), seeds=8,
                       sizes=dict(_COMMON, levels=2, train_steps=2000), sample_quality=True),
    "fashion32_l3": dict(dataset="fashion_mnist", architectures=("glow",), seeds=6,
                         sizes=dict(_COMMON, levels=3, train_steps=3000, pad_to=32),
                         sample_quality=True),
    "digits_l3": dict(dataset="digits", architectures=("glow", "realnvp"), seeds=8,
                      sizes=dict(_COMMON, levels=3, train_steps=2000), sample_quality=False),
}
# The recipe and soft bounds every study run trains with: the library's defaults of 2026-11-30
# (the plan's "default recipe"), pinned so that a later change of a default (issue 13) does not
# send the remaining settings, or a rerun of a finished one, to another recipe.
RECIPE = dict(lr_schedule="cosine", lr_min_ratio=0.01, ema_decay=0.999, network_init="uniform",
              grad_clip_norm=1e5, max_shift=5.0, max_log_sigma=3.0)
MAX_LOG_SCALE = {"glow": 3.0, "realnvp": 2.0}
QUICK = dict(steps_per_level=2, hidden_channels=32, train_steps=600, lc_pilot_steps=100,
             warmup_steps=100)
# --smoke (the tests): --quick's setting with a tiny model and budget; results named *_smoke.
SMOKE = dict(steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=8,
             lc_pilot_steps=2, warmup_steps=2)
TEMPERATURES = (0.7, 1.0)
FOREST_FIGURE = "split_study_forest.png"  # `--figures`, in docs/figures/
SAMPLE_QUALITY_SAMPLES = 10000


def run_config(sizes, dataset, architecture, split, lc_pilot, seed, control=False):
  """The TrainConfig fields of one run (explicit recipe; the static split has no pilot unless
  it is the budget-matched control, `budget_matched_control`)."""
  from lcflow_tf import flows  # pylint: disable=g-import-not-at-top
  # The coupling scale of those runs: each architecture's original (their records name none).
  cfg = dict(sizes, **RECIPE, max_log_scale=MAX_LOG_SCALE[architecture],
             scale_fn=flows.original_scale_fn(architecture), dataset=dataset,
             architecture=architecture, split=split, lc_pilot=lc_pilot, seed=seed,
             log_every=max(1, sizes["train_steps"] // 4),
             checkpoint_every=sizes["train_steps"], images_every=10 ** 9)
  if control:
    cfg["budget_matched_control"] = True
  elif split == "static":
    cfg["lc_pilot_steps"] = 0
  return cfg


def add_paired(table, per_row, arch):
  """Adds to `arch`'s rows of `table` their paired differences to `static` and, for the other
  `*@nosplit` rows, to the budget-matched control (the ranking alone, at equal training)."""
  control = CONTROL_ROWS[0]
  for row in table:
    if row["architecture"] != arch or row["row"] == "static":
      continue
    row["paired"] = intervals.paired_summary(per_row[row["row"]], per_row["static"])
    row["vs static (95% CI)"] = format_paired(row["paired"])
    if control in per_row and row["row"] != control and row["row"].endswith("@nosplit"):
      row["paired_control"] = intervals.paired_summary(per_row[row["row"]], per_row[control])
      row[CONTROL_COLUMN] = format_paired(row["paired_control"])


def format_paired(summary):
  interval = ("" if summary["low"] is None
              else f" [{summary['low']:+.4f}, {summary['high']:+.4f}]")
  return (f"{summary['mean']:+.4f}{interval} (lower on {summary['lower']}/{summary['n']})")


def cropped_sampler(flow, shape):
  """`sample_fn(n, temperature, seed)` of `flow` cropped to its centre `shape` (H, W).

  The padded settings are scored on the original image area, with the classifier of the
  unpadded data (the border of a sample is not an image).
  """
  from lcflow_tf import sample_quality  # pylint: disable=g-import-not-at-top
  sample = sample_quality.flow_sampler(flow)
  big_h, big_w = flow.image_shape[:2]
  top, left = (big_h - shape[0]) // 2, (big_w - shape[1]) // 2

  def sample_fn(n, temperature, seed):
    return sample(n, temperature, seed)[:, top:top + shape[0], left:left + shape[1], :]

  return sample_fn


def run_worker(spec_path):
  """Trains and evaluates one run (`ablation.run_worker`), then its sample quality if asked.

  A run folder whose result.json is already there (the worker stopped after training, e.g. in
  the sample-quality step) is not trained again: only the sample quality is measured.
  """
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  with open(spec_path) as f:
    spec = json.load(f)
  path = os.path.join(spec["model_dir"], "result.json")
  result = ablation.stored(path, spec_path, spec["config"])
  if result is None:
    ablation.run_worker(spec_path)
    with open(path) as f:
      result = json.load(f)
  else:
    ablation.check_defaults(result, spec["config"], spec["model_dir"])
  asked = spec.get("sample_quality")
  if not asked:
    return
  from lcflow_tf import data  # pylint: disable=g-import-not-at-top
  from lcflow_tf import evaluation
  from lcflow_tf import sample_quality
  run = evaluation.load_run(spec["model_dir"])  # the averaged weights, as evaluated
  cfg = run.train_config
  plain = data.load_dataset(cfg.dataset, cfg.data_dir, cfg.n_bits)
  measured = sample_quality.evaluate_sampler(
      cropped_sampler(run.flow, plain.image_shape[:2]), plain, asked["temperatures"],
      num_samples=asked["num_samples"], seed=ablation.EVAL_SEED)
  result["sample_quality"] = {
      "temperatures": {t: r["frechet_distance"] for t, r in measured["temperatures"].items()},
      "num_samples": measured["num_samples"],
      "reference_frechet_distance": measured["reference_frechet_distance"]}
  results.write_json(path, result)


def paired_by_setting(results_dir):
  """The study's paired statistics per setting and architecture, from its committed records.

  Reads split_study_<setting>_runs.json (every run's test bits/dim) and split_study_<setting>.json
  (the table: its date) in `results_dir` for every setting of `SETTINGS`, and pairs the rows by
  seed as the tables do (`add_paired`).

  Returns:
    [(setting, architecture, rows, date)]: `rows` in `ROWS` order without `static`, each a
    dict with `row`, `paired` and, for the rows trained like the control, `paired_control`
    (`intervals.paired_summary`); `date` is the table's.

  Raises:
    ValueError: if a row's seeds differ from those of `static` (no pairing by seed).
  """
  found = []
  for setting, spec in SETTINGS.items():
    name = f"split_study_{setting}"
    with open(os.path.join(results_dir, f"{name}_runs.json")) as f:
      runs = json.load(f)
    with open(os.path.join(results_dir, f"{name}.json")) as f:
      date = json.load(f)["machine"]["date"]
    for arch in spec["architectures"]:
      by_row = {}
      for run in runs:
        if run["architecture"] == arch:
          by_row.setdefault(run["row"], {})[run["seed"]] = run["test_bits_per_dim"]
      seeds = sorted(by_row["static"])
      for label, values in by_row.items():
        if sorted(values) != seeds:
          raise ValueError(f"{name}_runs.json: {arch} {label} has seeds {sorted(values)}, "
                           f"static has {seeds}")
      per_row = {label: [values[s] for s in seeds] for label, values in by_row.items()}
      table = [{"architecture": arch, "row": label} for label in ROWS if label in per_row]
      add_paired(table, per_row, arch)
      found.append((setting, arch, [r for r in table if r["row"] != "static"], date))
  return found


def draw_forest(found, path, footer):
  """The forest plot of `paired_by_setting`'s statistics: one panel per setting and
  architecture, each row's mean paired difference and 95% interval to `static` and to the
  budget-matched control; writes the PNG to `path`."""
  fig, axes = figures.new(2, (len(found) + 1) // 2, height=6.4, sharey=True)
  labels = [label for label in ROWS if label != "static"]
  series = (("paired", "vs static", "o", figures.COLORS[0], -0.14),
            ("paired_control", f"vs {CONTROL_ROWS[0]} (budget-matched control)", "s",
             figures.COLORS[1], 0.14))
  for ax, (setting, arch, rows, _) in zip(axes.flat, found):
    spec = SETTINGS[setting]
    for key, name, marker, color, offset in series:
      points = [(labels.index(r["row"]) + offset, r[key]) for r in rows if key in r]
      ax.errorbar([p["mean"] for _, p in points], [y for y, _ in points],
                  xerr=[[p["mean"] - p["low"] for _, p in points],
                        [p["high"] - p["mean"] for _, p in points]],
                  fmt=marker, color=color, capsize=2.5, markersize=4.5, label=name)
    ax.axvline(0.0, color="0.2", linewidth=0.8)
    ax.set_title(f"{setting}: {spec['dataset']}, {arch} L={spec['sizes']['levels']}, "
                 f"{rows[0]['paired']['n']} seeds")
    ax.set_xlabel("test bits/dim, row - reference (paired by seed)")
  for ax in axes.flat[len(found):]:
    ax.set_visible(False)
  axes[0, 0].set_yticks(range(len(labels)), labels)
  axes[0, 0].invert_yaxis()
  fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", ncol=2)
  return figures.save(fig, path, footer, legend_inches=0.35)


def write_forest(results_dir, figures_dir, command):
  """Draws `FOREST_FIGURE` into `figures_dir` from the records in `results_dir`; returns it."""
  found = paired_by_setting(results_dir)
  dates = ", ".join(f"{setting} {date}" for setting, date in
                    dict((s, d) for s, _, _, d in found).items())
  footer = (f"{command}\nRecords: docs/results/split_study_<setting>_runs.json (tables of "
            f"{dates}). Mean over seeds of (row - reference), paired by seed, with its 95% "
            "Student-t interval; left of 0: the row's test bits/dim is lower (better). The "
            "control is compared with the *@nosplit rows only, as in the tables.")
  return draw_forest(found, os.path.join(figures_dir, FOREST_FIGURE), footer)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--setting", default="digits_l3", choices=sorted(SETTINGS))
  parser.add_argument("--architectures", default=None, help="default: the setting's")
  parser.add_argument("--rows", default=",".join(ROWS))
  parser.add_argument("--seeds", default=None, help="comma list; default 0..n-1 of the setting")
  parser.add_argument("--quick", action="store_true",
                      help="digits_l3 Glow at a smoke-test size (600 steps), seed 0")
  parser.add_argument("--smoke", action="store_true",
                      help="--quick at the tests' size: K=1, width 8, batch 16, 8 steps")
  parser.add_argument("--sample_quality_samples", type=int, default=SAMPLE_QUALITY_SAMPLES)
  parser.add_argument("--train_steps", type=int, default=None,
                      help="override (smoke tests): the pilots get a quarter each")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "split_study"))
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--figures", action="store_true",
                      help=f"only draw {FOREST_FIGURE} from the records of every setting in "
                           "--results_dir (trains nothing)")
  parser.add_argument("--figures_dir", default=None, help="default docs/figures")
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    return run_worker(args.worker)
  if args.figures:
    from benchmarks.common import results  # pylint: disable=g-import-not-at-top
    path = write_forest(args.results_dir or results.RESULTS_DIR,
                        args.figures_dir or figures.FIGURES_DIR, results.command_line())
    print(f"wrote {path}")
    return
  suffix = "_smoke" if args.smoke else "_quick" if args.quick else ""
  args.quick = args.quick or args.smoke

  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  results_dir = args.results_dir or results.RESULTS_DIR
  setting = SETTINGS["digits_l3" if args.quick else args.setting]
  sizes = dict(setting["sizes"], **(SMOKE if args.smoke else QUICK if args.quick else {}))
  if args.train_steps:
    sizes.update(train_steps=args.train_steps,
                 lc_pilot_steps=max(1, min(sizes["lc_pilot_steps"], args.train_steps // 4)),
                 warmup_steps=min(sizes["warmup_steps"], args.train_steps))
  seeds = ([int(s) for s in args.seeds.split(",") if s] if args.seeds
           else [0] if args.quick else list(range(setting["seeds"])))
  architectures = (args.architectures.split(",") if args.architectures
                   else ["glow"] if args.quick else list(setting["architectures"]))
  rows_asked = [r for r in args.rows.split(",") if r]
  unknown = [r for r in rows_asked if r not in ROWS]
  if unknown:
    parser.error(f"--rows: unknown {unknown}; allowed: {', '.join(ROWS)}")
  if "static" not in rows_asked:
    rows_asked.insert(0, "static")  # every comparison is paired with it
  setting_name = "digits_l3" if args.quick else args.setting
  name = f"split_study_{setting_name}{suffix}"
  workdir = os.path.join(args.workdir, name)
  extra = None
  if setting["sample_quality"] and not args.quick:
    extra = {"sample_quality": {"temperatures": list(TEMPERATURES),
                                "num_samples": args.sample_quality_samples}}
  table, per_run, dates = [], [], set()
  for arch in architectures:
    per_row = {}
    for label in rows_asked:
      split, pilot = ROWS[label]
      values, quality, kept = [], [], []
      for seed in seeds:
        run = f"{arch}_{label.replace('@', '_at_')}_seed{seed}"
        cfg = run_config(sizes, setting["dataset"], arch, split, pilot, seed,
                         control=label in CONTROL_ROWS)
        heatmaps = None
        if split != "static":
          heatmaps = ablation.figure_spec(
              results_dir, f"{name}_{arch}_{label.replace('@', '_at_')}", seed)
        record = ablation.recorded_or_trained(
            cfg, os.path.join(workdir, run),
            os.path.join(results_dir, "split_study_runs", name, run + ".json"), heatmaps,
            script=os.path.abspath(__file__), extra=extra)
        res = record["result"]
        dates.add(record["machine"]["date"])
        values.append(res["test_bits_per_dim"])
        kept.append(res["kept_as_static"])
        quality.append((res.get("sample_quality") or {}).get("temperatures"))
        per_run.append(dict(architecture=arch, row=label, seed=seed, **res))
        print(f"[{name} {arch} {label} seed {seed}] test bits/dim "
              f"{res['test_bits_per_dim']:.4f}", flush=True)
      per_row[label] = values
      row = {"architecture": arch, "row": label, "test bpd mean": statistics.mean(values),
             "per seed": ", ".join(f"{v:.4f}" for v in values),
             "kept as static": ", ".join(f"{statistics.mean(k):.2f}" for k in zip(*kept))}
      for t in TEMPERATURES:
        found = [q[f"{t:g}"] for q in quality if q and q.get(f"{t:g}") is not None]
        if len(found) == len(seeds):
          row[f"FD T={t:g}"] = statistics.mean(found)
        elif found:  # never a mean over some seeds that reads like one over all of them
          row[f"FD T={t:g}"] = f"{statistics.mean(found):.4g} ({len(found)}/{len(seeds)} seeds)"
      table.append(row)
    add_paired(table, per_row, arch)
  control_column = [CONTROL_COLUMN] * any(CONTROL_COLUMN in r for r in table)
  columns = (["architecture", "row", "test bpd mean", "vs static (95% CI)", *control_column,
              "per seed", "kept as static"]
             + [f"FD T={t:g}" for t in TEMPERATURES if any(f"FD T={t:g}" in r for r in table)])
  notes = (f"Setting {setting_name}: {setting['dataset']}, {json.dumps(sizes)}; seeds {seeds}; "
           f"runs trained on {', '.join(sorted(dates))}; the library's default recipe of "
           "2026-11-30 (split_study.RECIPE, pinned). Test bits/dim over every held-out image, one "
           "dequantisation pass (padded settings: per padded dimension). `vs static`: mean over "
           "seeds of (row - static), paired by seed, its 95% Student-t interval, and on how "
           "many seeds the row is lower (better); `vs static@nosplit`: the same against the "
           "budget-matched control (the ranking alone). `kept as static`: per junction, the "
           "share of the kept elements that the static split keeps too (1 = static, 0 = its "
           "complement, ~0.5 = unrelated). `FD`: Frechet distance of samples to the test "
           "images on the sample-quality classifier's features (padded settings: the centre "
           "28x28), mean over seeds.")
  text = results.write(name, results.command_line(), table, columns, notes=notes,
                       results_dir=results_dir)
  results.write_json(os.path.join(results_dir, f"{name}_runs.json"), per_run)
  print(text)


if __name__ == "__main__":
  main()
