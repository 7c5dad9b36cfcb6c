"""The peer benchmark's tables, from its per-model records (benchmarks/peers/records.py).

`write(run)` collects every record of the run's settings (all rows and models, also those of
earlier invocations), and writes <name>.{md,json} in the results directory: one row per
(row, model) with training images/s, test bits/dim, log_prob and sampling throughput and peak
memory, then, in the notes, the sample-quality table (Frechet distance per temperature, with
links to the grids), the encode/decode round trips, the recipes and the comparison with the
references of docs/results/peer_references.json (the targets of issue 13 and earlier
measurements, kept there rather than in code). `write_profile` writes our training step's
profile (profile_train_step<suffix>.{md,json}). `write_figure` draws the main table's training
speed and test bits/dim (docs/figures/peers.png) from a written table and its records.
"""

import json
import math
import os
import statistics

from benchmarks.common import figures
from benchmarks.common import results
from benchmarks.peers import peer_protocol
from benchmarks.peers import records

REFERENCES = os.path.join(results.RESULTS_DIR, "peer_references.json")
LOSS_WINDOW = 50
COLUMNS = ["row", "model", "training images/s", "training images/s / TFP's",
           "training images/s / ours'", "test bits/dim",
           "test bits/dim - TFP's", "test bits/dim, raw weights", "log_prob images/s",
           "sampling images/s", "sampling with log-prob images/s", "peak RSS MB", "parameters"]
LABELS = {"ours": "ours", "tfp": "TFP tfb.Glow", "normflows": "normflows Glow"}
FIGURE = "peers.png"  # `write_figure`, in docs/figures/
ROW_TEXT = {"best": "each library's\nown recipe", "identical": "one recipe\n(our default)",
            "noclip": "Adam, constant,\nno clipping", "clip1000": "Adam, constant,\nclip at 1000"}


def collect(run):
  """[(row, model, record)] of every stored record with the run's settings, in table order."""
  found = []
  for row in records.ROWS:
    for model in records.MODELS:
      record = records.stored_record(run.records_dir, run.config, model, row)
      if record is not None:
        found.append((row, model, record))
  return found


def _rate(answers, count):
  return peer_protocol.median_rate(answers, count)


def table_row(config, row, model, result, tfp=None, speed=None):
  """The main table's values for one record.

  `tfp`: the TFP record's result of the same row ("- TFP's" is empty without one); `speed`:
  {other model: this model's training images/s over the other's, measured in the same
  turns} (`speed_ratio`); the "/ TFP's" and "/ ours'" columns are empty without a value.
  """
  speed = speed or {}
  evaluation, ready = result["evaluation"], result["ready"]
  timings = result["timings"]
  raw = evaluation.get("raw_weights", {}).get("bpd_all", "")
  return {
      "row": row, "model": LABELS[model],
      "training images/s": _train_rate(result) * config.batch,
      "training images/s / TFP's": speed.get("tfp") or "",
      "training images/s / ours'": speed.get("ours") or "",
      "test bits/dim": evaluation["bpd_all"],
      "test bits/dim - TFP's": (evaluation["bpd_all"] - tfp["evaluation"]["bpd_all"]
                                if tfp else ""),
      "test bits/dim, raw weights": raw,
      "log_prob images/s": _rate(timings["log_prob"], config.log_prob_batch),
      "sampling images/s": _rate(timings["sample"], config.sample_count),
      "sampling with log-prob images/s": _rate(timings["sample_and_log_prob"],
                                               config.sample_count),
      "peak RSS MB": result["peak_rss_mb"],
      "parameters": ready.get("parameters_used", ready["parameters"])}


def quality_table(config, found):
  """Markdown: Frechet distance (non-finite samples excluded) per temperature, grid links."""
  temps = [f"{t:g}" for t in config.temperatures]
  lines = ["| row | model | " + " | ".join(f"T={t}" for t in temps) + " |",
           "|---|---|" + "---|" * len(temps)]
  for row, model, record in found:
    quality = record["result"]["sample_quality"]
    cells = []
    for t in temps:
      r = quality["temperatures"][t]
      fd = "n/a" if r["frechet_distance"] is None else f"{r['frechet_distance']:.4g}"
      bad = f", {r['nonfinite_excluded']} non-finite" if r["nonfinite_excluded"] else ""
      cells.append(f"[{fd}{bad}]({quality['grids'][t]})")
    lines.append(f"| {row} | {LABELS[model]} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def reconstruction_table(found):
  """Markdown: encode -> decode round trips of the test set and of temperature-1 samples."""
  over = f"> {peer_protocol.ROUND_TRIP_TOLERANCE:g}"
  low, high = peer_protocol.SAMPLE_RANGE
  lines = [f"| row | model | test: max error | test: {over} | test: non-finite | samples: max "
           f"error | samples: {over} | samples: non-finite | samples: pixels outside "
           f"[{low:g}, {high:g}] |", "|---|---|---|---|---|---|---|---|---|"]
  for row, model, record in found:
    r = record["result"]["reconstruction"]
    counted = {key: r.get(key, "n/a (not recorded)")  # older records lack them
               for key in ("test_over_tolerance", "samples_over_tolerance")}
    outside = r.get("samples_outside_share", "n/a (not recorded)")
    outside = f"{100 * outside:.3g}%" if isinstance(outside, float) else outside
    lines.append(f"| {row} | {LABELS[model]} | {r['test_max']:.3g} | "
                 f"{counted['test_over_tolerance']} | {r['test_nonfinite']} of {r['n_test']} | "
                 f"{r['samples_max']:.3g} | {counted['samples_over_tolerance']} | "
                 f"{r['samples_nonfinite'] + r['samples_roundtrip_nonfinite']} of "
                 f"{r['n_samples']} | {outside} |")
  return "\n".join(lines)


def divergence(result):
  """First non-finite loss and the largest gradient norm, as text."""
  losses = [l for t in result["train"] for l in t["losses"]]
  norms = [g for t in result["train"] for g in t["grad_norms"]]
  bad = next((i + 1 for i, l in enumerate(losses) if not math.isfinite(l)), None)
  finite = [g for g in norms if math.isfinite(g)]
  skipped = sum(t.get("skipped", 0) for t in result["train"])
  return ((f"first non-finite loss at step {bad}" if bad else "all losses finite")
          + (f" ({skipped} steps skipped)" if skipped else "")
          + (f", largest gradient norm {max(finite):.3g} at step {norms.index(max(finite)) + 1}"
             if finite else ""))


def references(found, path=REFERENCES, speeds=None):
  """Lines comparing the records with docs/results/peer_references.json (targets, earlier).

  `speeds`: {(row, model, other): ratio} (`speed_ratio`); without ours' ratio to TFP's in a
  row, its line says the two did not train together.
  """
  speeds = speeds or {}
  if not os.path.exists(path):
    return []
  with open(path) as f:
    refs = json.load(f)
  lines = []
  values = {(row, model): r["result"] for row, model, r in found}
  targets = refs.get("targets", {})
  for row in records.ROWS:
    ours, tfp = values.get((row, "ours")), values.get((row, "tfp"))
    if ours is None or tfp is None or not targets:
      continue
    gap = tfp["evaluation"]["bpd_all"] - ours["evaluation"]["bpd_all"]
    speed = speeds.get((row, "ours", "tfp"))
    bits = (f"ours {abs(gap):.3f} bits/dim {'below' if gap >= 0 else 'above'} TFP (target "
            f">= {targets['bpd_below_tfp']:g} below: "
            f"{'met' if gap >= targets['bpd_below_tfp'] else 'missed'})" if math.isfinite(gap)
            else f"no bits/dim comparison (not finite: TFP "
                 f"{tfp['evaluation']['bpd_all']:.4f}, ours {ours['evaluation']['bpd_all']:.4f}; "
                 f"{divergence(tfp)} in TFP's training)")
    lines.append(
        f"{row}: {bits}, " + (
            f"training {speed:.2f}x TFP's images/s (target >= "
            f"{targets['train_speedup_vs_tfp']:g}x: "
            f"{'met' if speed >= targets['train_speedup_vs_tfp'] else 'missed'})"
            if speed else "no training-speed comparison (the records did not train together)"))
  for entry in refs.get("earlier", []):
    lines.append(f"earlier: {entry['what']}: {_earlier_values(entry, path)} "
                 f"({entry.get('source') or entry['file']})")
  return lines


def _earlier_values(entry, references_path):
  """An entry's values: given in it, or read from the row of a results file it names."""
  if "values" in entry:
    return ", ".join(f"{k} {v}" for k, v in entry["values"].items())
  with open(os.path.join(os.path.dirname(references_path), entry["file"])) as f:
    record = json.load(f)
  row = next(r for r in record["rows"] if r["metric"].startswith(entry["metric"]))
  return ", ".join(f"{c} {row[c]:.4g}" for c in entry["columns"]) + (
      f" (measured {record['machine']['date']})")


def _train_rate(result):
  """Training steps/s after the first (warm-up, not timed) turn."""
  return peer_protocol.training_rate(result["train"], 1)


def speed_ratio(run, row, model, record, other):
  """`model`'s training images/s over `other`'s in the turns they trained in together.

  From the record's `rates_alongside`; a record written before those existed (2026-12-01) is
  paired with `other`'s record (its own, or a partner's under partners/) of the same sitting:
  same command, date, configuration and models alongside. None when they did not train
  together: rates from different hours are not comparable on a shared machine.
  """
  result = record["result"]
  if other == model or other not in result["alongside"]:
    return None
  rates = result.get("rates_alongside")
  if rates is not None:
    return rates[model] / rates[other]
  for alongside in (None, result["alongside"]):  # its own record, then a partner's
    candidate = records.stored_record(run.records_dir, run.config, other, row, alongside)
    if (candidate is not None and candidate["command"] == record["command"]
        and candidate["machine"]["date"] == record["machine"]["date"]
        and sorted(candidate["result"]["alongside"]) == sorted(result["alongside"])):
      return _train_rate(result) / _train_rate(candidate["result"])
  return None


def notes(run, found, speeds=None):
  """The text under the main table (`speeds`: as `references` takes them)."""
  config = run.config
  h, w, c = found[0][2]["result"]["ready"]["image_shape"] if found else (0, 0, 0)
  parts = [
      f"{config.dataset} {h}x{w}x{c}; Glow with L={config.levels}, K={config.steps_per_level}, "
      f"width {config.width}, batch {config.batch}, {config.steps} steps, every model of a "
      "row trained on the same exported stream (batch checksums compared) in alternating "
      f"turns of {config.chunk_steps} steps with the models named in 'alongside' (training "
      f"images/s after the first {config.warmup_steps} steps); log_prob (batch "
      f"{config.log_prob_batch} test images) and sampling ({config.sample_count} images, T=1) "
      f"throughput: median of {config.rounds} alternating rounds x {config.repeats} calls; "
      "test bits/dim on all test images (one dequantisation pass, seed "
      f"{config.eval_seed}), with the averaged weights when the recipe averages (the raw "
      "weights' column otherwise empty); peak RSS of the model's own process up to the end "
      "of evaluation. normflows' sample always returns the log-density too (one call).",
      "Models: " + "; ".join(f"{LABELS[m]}: {_model_text(found, m)}"
                             for m in records.MODELS
                             if any(x == m for _, x, _ in found)) + ".",
      "Recipes: " + "; ".join(_recipe_text(config, row, model, r)
                              for row, model, r in found) + ".",
      "Sample quality: Frechet distance of N = "
      f"{config.quality_samples} samples per temperature to the first "
      f"{_first(found, 'num_reference_images')} test images on the features of the cached "
      f"classifier (lcflow_tf.sample_quality, test accuracy "
      f"{_first(found, 'classifier_test_accuracy')}; N training images give "
      f"{_first(found, 'reference_frechet_distance')}, the floor at these sizes; non-finite "
      "samples are excluded and counted); each cell links its grid of the first 64 "
      "samples:\n\n" + quality_table(config, found),
      "Encode -> decode round trips (float32, max over pixels of |decode(encode(x)) - x| per "
      f"image; {config.reconstruction_samples} samples at T=1):\n\n" + reconstruction_table(found),
  ]
  refs = references(found, speeds=speeds)
  if refs:
    parts.append("Against the targets and earlier measurements "
                 "(docs/results/peer_references.json):\n\n" + "\n".join(f"- {l}" for l in refs))
  return "\n\n".join(parts)


def _recipe_text(config, row, model, record):
  recipe = peer_protocol.Recipe(**record["config"]["worker"]["recipe"])
  result = record["result"]
  return (f"{row}/{model}: {recipe.describe(config.steps)} ({divergence(result)}; data "
          f"{'same' if result['same_data'] else 'NOT the same'}; alongside "
          f"{', '.join(result['alongside'])}; {record['machine']['date']})")


def _first(found, key):
  """A sample-quality value shared by all records (the first record's), formatted."""
  if not found:
    return "-"
  value = found[0][2]["result"]["sample_quality"][key]
  return f"{value:.4g}" if isinstance(value, float) else str(value)


def _model_text(found, model):
  ready = next(r["result"]["ready"] for _, m, r in found if m == model)
  text = ready.get("model", "")
  if model == "normflows":
    text += (f" (normflows {ready['normflows']}, PyTorch {ready['torch']}, eager, "
             f"{ready['threads']} threads)")
  return text


def write(run):
  """Writes <name>.{md,json} from the run's records; returns the Markdown."""
  found = collect(run)
  config = run.config
  tfp = {row: record["result"] for row, model, record in found if model == "tfp"}
  speeds = {(row, model, other): speed_ratio(run, row, model, record, other)
            for row, model, record in found for other in ("tfp", "ours")}
  rows = [table_row(config, row, model, record["result"], tfp.get(row),
                    {other: speeds[(row, model, other)] for other in ("tfp", "ours")})
          for row, model, record in found]
  details = {"records": {f"{row}/{model}": os.path.relpath(
      records.record_path(run.records_dir, model, row), run.results_dir)
                         for row, model, _ in found},
             "final_train_loss_bits_per_dim": {
                 f"{row}/{model}": _loss_bpd(record["result"]) for row, model, record in found}}
  return results.write(run.name, results.command_line(), rows, COLUMNS,
                       notes=notes(run, found, speeds),
                       results_dir=run.results_dir, details=details)


def _loss_bpd(result):
  h, w, c = result["ready"]["image_shape"]
  dims = h * w * c
  losses = [l for t in result["train"] for l in t["losses"]][-LOSS_WINDOW:]
  return (statistics.mean(losses) + dims * math.log(result["ready"]["num_bins"])) / (
      dims * math.log(2.0))


def write_profile(run, row, answer):
  """profile_train_step<suffix>.{md,json}: our training step by model part and op family."""
  config = run.config
  family_table = "\n".join(
      ["| op family | ms/step | % of op time |", "|---|---|---|"]
      + [f"| {f['op family']} | {f['ms/step']:.4g} | {f['% of op time']:.3g} |"
         for f in answer["families"]])
  text = (
      f"Our Glow's training step ({'x'.join(map(str, answer['image_shape']))}, L={config.levels}, "
      f"K={config.steps_per_level}, width {config.width}, batch {config.batch}, not XLA, the "
      f"{row} row's recipe), {answer['traced_steps']} steps traced with "
      "tf.profiler.experimental after training. Op time is summed from the trace's TensorFlow "
      "op events and attributed by name scope (benchmarks/speed/profile_step.py: the bijector an "
      "op was created in, its network, the 1x1 convolution's `apply`, the map bookkeeping's "
      "`carried_map`, the step's `loss` / `clipping` / `optimizer` / `weight_average`); a "
      "gradient op counts for the op it differentiates (the backward column). The executor "
      "runs independent ops on several threads, so op time can exceed the wall time; 'no op "
      "running' is the traced wall time minus the time when at least one op ran. Tracing "
      "itself slows the step (traced vs not traced).\n\nThe same op time by op family:\n\n"
      + family_table)
  suffix = (run.name[len("peer_glow"):] if run.name.startswith("peer_glow")
            else "_" + run.name)
  print(results.write("profile_train_step" + suffix, results.command_line(), answer["rows"],
                      ["part", "forward ms/step", "backward ms/step", "total ms/step",
                       "% of op time"], notes=text, results_dir=run.results_dir,
                      details={"families": answer["families"]}))


def record_dates(table, results_dir):
  """{"row/model": date} of the per-model records a written table names (those still there)."""
  dates = {}
  for key, path in table.get("details", {}).get("records", {}).items():
    try:
      with open(os.path.join(results_dir, path)) as f:
        dates[key] = json.load(f)["machine"]["date"]
    except (OSError, ValueError, KeyError):
      continue
  return dates


def draw_figure(table, path, footer):
  """Training speed and test bits/dim of every (row, model) of a written table, side by side.

  Left: training images/s relative to ours' in the same alternating turns (the table's
  "/ ours'" column; ours = 1), the only speed comparison that holds on a shared machine.
  Right: test bits/dim, a non-finite value marked as diverged. Writes the PNG to `path`.
  """
  values = {(r["row"], r["model"]): r for r in table["rows"]}
  rows = [row for row in records.ROWS if any(key[0] == row for key in values)]
  fig, axes = figures.new(1, 2, height=4.4)
  speed, bits = axes[0]
  width = 0.8 / len(records.MODELS)
  for i, model in enumerate(records.MODELS):
    color = figures.COLORS[i]
    for j, row in enumerate(rows):
      value = values.get((row, LABELS[model]))
      if value is None:
        continue
      x = j + (i - (len(records.MODELS) - 1) / 2) * width
      ratio = 1.0 if model == "ours" else value["training images/s / ours'"]
      absolute = f"{value['training images/s']:.0f} images/s"
      if ratio:
        speed.bar(x, ratio, width, color=color)
        speed.text(x, ratio, f"{ratio:.2f}x", ha="center", va="bottom", fontsize=7)
        speed.text(x, 0.03, absolute, ha="center", va="bottom", fontsize=6, rotation=90,
                   color="white")
      else:
        speed.text(x, 0.03, f"not timed beside ours\n({absolute} alone)", ha="center",
                   va="bottom", fontsize=6, rotation=90, color=color)
      bpd = value["test bits/dim"]
      if isinstance(bpd, float) and math.isfinite(bpd):
        bits.plot(x, bpd, "o", color=color)
        bits.annotate(f"{bpd:.3f}", (x, bpd), xytext=(0, 5), textcoords="offset points",
                      ha="center", va="bottom", fontsize=7)
      else:
        bits.text(x, 0.5, "diverged (NaN)", ha="center", va="center", fontsize=7, rotation=90,
                  color=color, transform=bits.get_xaxis_transform())
  for ax in (speed, bits):
    ax.set_xticks(range(len(rows)), [f"{row}\n{ROW_TEXT.get(row, '')}" for row in rows])
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.grid(axis="x", visible=False)
  speed.set_ylabel("training images/s / ours' (same turns)")
  speed.set_title("Training speed relative to ours, measured side by side")
  low, high = bits.get_ylim()
  bits.set_ylim(low - 0.05, high + 0.15)  # room for the labels above the markers
  bits.set_ylabel("test bits/dim (all test images; lower is better)")
  bits.set_title("Test bits/dim after training")
  handles = [figures.patch(figures.COLORS[i], LABELS[m]) for i, m in enumerate(records.MODELS)]
  fig.legend(handles=handles, loc="upper center", ncol=len(handles))
  return figures.save(fig, path, footer, legend_inches=0.35)


def write_figure(results_dir, name, figures_dir, command):
  """Draws `FIGURE` into `figures_dir` from the written table <name>.json in `results_dir`
  and the dates of the records it names; returns the figure's path."""
  with open(os.path.join(results_dir, f"{name}.json")) as f:
    table = json.load(f)
  by_date = {}
  for key, date in record_dates(table, results_dir).items():
    by_date.setdefault(date, []).append(key)
  sittings = "; ".join(f"{date}: {', '.join(keys)}" for date, keys in sorted(by_date.items()))
  footer = (f"{command}\nRecords: docs/results/{name}.json (table of "
            f"{table['machine']['date']}); per-model records trained on {sittings or '-'}. "
            "Bar heights: training images/s over ours' in the same alternating turns; the "
            "absolute images/s written in the bars move several-fold with the load of the "
            "shared 2-core machine between sittings and compare only within one.")
  return draw_figure(table, os.path.join(figures_dir, FIGURE), footer)
