"""How much one training run's result moves: seed to seed, and under a float-order perturbation.

For each training recipe, trains the ablation's Fashion-MNIST Glow (static split; sizes of
`benchmarks/split/ablation.py`) with several seeds, and reports the test bits/dim (all 10,000 test
images, the ablation's evaluation) of each: the seed-to-seed standard deviation and a 95%
confidence interval of the mean. The perturbation test retrains some of the seeds with the
same data, initialisation and step sequence, but with the global batch split over two
replicas (MirroredStrategy on two logical CPU devices): the per-replica sums and the
all-reduce change the order of the floating-point additions and nothing else, so the
difference between the twins is the run's sensitivity to rounding.

Recipes (`RECIPES`): `main` is the library before issue 13 (constant learning rate after the
warm-up, no weight averaging, unbounded couplings and split prior, He-normal conditioner
initialisation, gradients clipped at 1000); `default` is the library now (whatever
`TrainConfig` defaults to); `clip_1000` is the default with the clipping of before
2026-11-30 (the first recipe of issue 13); `sigmoid` is the default before the tanh scale
(2026-12-07: Glow's sigmoid scale bounded by 3; tables made before then call it `default`);
the others vary one part of the default; `dataK` keeps the data of seed K
(`TrainConfig.data_seed`) while the seed moves the weights. Records saved without a scale
function were trained with Glow's sigmoid, and are reused as such.

Every finished run leaves a record under docs/results/noise_floor_runs/ (committed), reused by
later invocations, so the study can be extended one recipe or seed at a time.

  python benchmarks/numerics/noise_floor.py --recipes main,default          # 6 seeds + 3 twins each
  python benchmarks/numerics/noise_floor.py --recipes default --seeds 0,1 --perturb_seeds ""
  python benchmarks/numerics/noise_floor.py --smoke --recipes default --seeds 0 --perturb_seeds ""
                                       # the ablation's smoke size (K=1 width 8, 4 steps): tests
"""

import argparse
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from benchmarks.common import intervals  # pylint: disable=g-import-not-at-top
from benchmarks.split import ablation  # pylint: disable=g-import-not-at-top

# No soft bounds: Glow's original sigmoid scale (the tanh scale is always bounded).
UNBOUNDED = dict(scale_fn="sigmoid", max_log_scale=0.0, max_shift=0.0, max_log_sigma=0.0)
# Glow's sigmoid scale with the soft bound of 3: the library's default before the tanh scale.
SIGMOID = dict(scale_fn="sigmoid", max_log_scale=3.0)
RECIPES = {
    "main": dict(lr_schedule="constant", ema_decay=0.0, network_init="he_normal",
                 grad_clip_norm=1000.0, **UNBOUNDED),
    "default": {},
    "sigmoid": dict(SIGMOID),
    "clip_1000": dict(grad_clip_norm=1000.0),
    "constant": dict(lr_schedule="constant"),
    "linear": dict(lr_schedule="linear"),
    "no_ema": dict(ema_decay=0.0),
    "ema_0.99": dict(ema_decay=0.99),
    "ema_0.995": dict(ema_decay=0.995),
    "unbounded": dict(UNBOUNDED),
    "he_normal": dict(network_init="he_normal"),
    # The default with the data order and dequantisation noise of seed k whatever `--seeds`
    # says: `--recipes data1 --seeds 3` is seed 3's initial weights on seed 1's data. Over
    # several seeds, the spread of the weights alone (ActNorm's data initialisation aside).
    **{f"data{k}": dict(data_seed=k) for k in range(6)},
    # Glow's LU 1x1 convolution fixes a permutation P and the signs of U's diagonal at
    # initialisation (from the seed; never trained); the plain matrix has no such fixed choice.
    "conv_matrix": dict(conv1x1="matrix"),
    # The early phase and the budget (registered 2026-12-04, docs/questions/robustness.md): the
    # runs' ranks are set in the first few hundred steps and the gap closes slowly.
    "steps_6000": dict(train_steps=6000),
    "warmup_1000": dict(warmup_steps=1000),
    "lr_5e-4": dict(learning_rate=5e-4),
    # A tighter coupling bound (registered 2026-12-05): each Glow coupling's decode gain at
    # most e^2 = 7.4 instead of e^3 = 20.1, for float32 round trips at the peer size.
    "max_log_scale_2": dict(scale_fn="sigmoid", max_log_scale=2.0),
    # A coupling that can expand as well as contract (registered 2026-12-07): RealNVP's
    # log scale 2 tanh(h) in (-2, 2) instead of Glow's log sigmoid(h + 2) in (-3, 0]; the
    # sigmoid makes every coupling contract on the way to the latent and the ActNorms
    # re-expand, and decoding multiplies rounding errors by the couplings' gains (up to 20).
    "scale_tanh_2": dict(scale_fn="tanh", max_log_scale=2.0),
}
# A recipe's size fields (train_steps, warmup_steps, ...) give way to --smoke's sizes.
def recipe_config(recipe, dataset, seed, perturbed, smoke=False):
  """The run's TrainConfig fields: the ablation's (its smoke size with `smoke`), the default
  recipe, then `recipe`'s."""
  sizes = {**ablation.SIZES[dataset], **ablation.default_recipe("glow"), **RECIPES[recipe],
           **(ablation.SMOKE if smoke else {})}
  cfg = ablation.run_config(sizes, dataset, "glow", "static", False, seed)
  if perturbed:
    cfg.update(strategy="mirrored", cpu_replicas=2)
  return cfg


def paired_to_default(per_recipe, recipe):
  """`recipe` - `default` paired by seed (same initial weights and data order), as text: mean,
  95% t half-width, on how many seeds lower; "" without `default`, for itself, or one seed."""
  if recipe == "default" or "default" not in per_recipe or len(per_recipe[recipe]) < 2:
    return ""
  p = intervals.paired_summary(per_recipe[recipe], per_recipe["default"])
  return (f"{p['mean']:+.4f} +- {(p['high'] - p['low']) / 2:.4f} "
          f"(lower on {p['lower']}/{p['n']})")


def with_train_steps(cfg, train_steps):
  """`cfg` with `train_steps` (the --train_steps override of the smoke tests), if given."""
  if train_steps:
    cfg.update(train_steps=train_steps, checkpoint_every=train_steps,
               warmup_steps=min(cfg["warmup_steps"], train_steps),
               log_every=max(1, train_steps // 4))
  return cfg


def raw_bits_per_dim(model_dir):
  """Test bits/dim of a finished run's trained (not averaged) weights, the ablation's protocol."""
  from lcflow_tf import evaluation  # pylint: disable=g-import-not-at-top
  run = evaluation.load_run(model_dir, weights="raw")
  return ablation.held_out(run.flow, run.dataset)["bits_per_dim"]


def with_raw(record, record_path, model_dir):
  """`record`, with the raw weights' test bits/dim when the run kept averages.

  Runs recorded before that column existed get it now from their checkpoint (in a
  subprocess), and their record file is updated.
  """
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  res = record["result"]
  if res.get("weights") != "ema" or "test_bits_per_dim_raw" in res:
    return record
  proc = subprocess.run([sys.executable, __file__, "--raw_worker", model_dir],
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True,
                        text=True)
  if proc.returncode:
    sys.stderr.write(proc.stderr[-3000:])
    raise SystemExit(f"evaluating the raw weights of {model_dir} failed")
  res["test_bits_per_dim_raw"] = float(proc.stdout.strip().splitlines()[-1])
  results.write_json(record_path, record)
  return record


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--recipes", default="main,default",
                      help=f"comma-separated, from {', '.join(RECIPES)}")
  parser.add_argument("--dataset", default="fashion_mnist", choices=sorted(ablation.SIZES))
  parser.add_argument("--seeds", default="0,1,2,3,4,5")
  parser.add_argument("--perturb_seeds", default="0,1,2",
                      help="seeds also trained on two replicas (empty: none)")
  parser.add_argument("--train_steps", type=int, default=None, help="override (smoke tests)")
  parser.add_argument("--smoke", action="store_true",
                      help="the ablation's smoke size (K=1, width 8, batch 16, 4 steps), the "
                           "tests'; runs named *_smoke")
  parser.add_argument("--workdir", default=os.path.join(ROOT, "runs", "noise_floor"))
  parser.add_argument("--name", default=None,
                      help="name of the runs' folders (default noise_floor[_dataset])")
  parser.add_argument("--table", default=None,
                      help="name of the table files (default: --name), e.g. for a subset of "
                           "the recipes or seeds")
  parser.add_argument("--results_dir", default=None, help="default docs/results")
  parser.add_argument("--raw_worker", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.raw_worker:
    print(raw_bits_per_dim(args.raw_worker))
    return
  from benchmarks.common import results  # pylint: disable=g-import-not-at-top
  recipes = [r for r in args.recipes.split(",") if r]
  unknown = [r for r in recipes if r not in RECIPES]
  if unknown:
    parser.error(f"--recipes: unknown {unknown}; allowed: {', '.join(RECIPES)}")
  try:
    seeds = [int(s) for s in args.seeds.split(",") if s]
    twins = [int(s) for s in args.perturb_seeds.split(",") if s]
  except ValueError:
    parser.error(f"--seeds/--perturb_seeds must be comma-separated integers, got "
                 f"{args.seeds!r} / {args.perturb_seeds!r}")
  if not seeds or not set(twins) <= set(seeds):
    parser.error("--seeds must not be empty and --perturb_seeds must be a subset of it")
  results_dir = args.results_dir or results.RESULTS_DIR
  name = args.name or "noise_floor" + ("" if args.dataset == "fashion_mnist"
                                       else f"_{args.dataset}") + ("_smoke" * args.smoke)
  base = with_train_steps(recipe_config("default", args.dataset, 0, False, smoke=args.smoke),
                          args.train_steps)
  sizes = {k: base[k] for k in ("levels", "steps_per_level", "hidden_channels", "train_steps",
                                "batch_size", "learning_rate", "warmup_steps")}
  rows, per_run, dates, per_recipe = [], [], set(), {}
  for recipe in recipes:
    values, perturbed, raw, nonfinite = {}, {}, {}, 0
    for seed in seeds + [("twin", s) for s in twins]:
      twin = isinstance(seed, tuple)
      s = seed[1] if twin else seed
      cfg = with_train_steps(recipe_config(recipe, args.dataset, s, twin, smoke=args.smoke),
                             args.train_steps)
      run = f"{recipe}_seed{s}" + ("_2replicas" if twin else "")
      model_dir = os.path.join(args.workdir, name, run)
      record_path = os.path.join(results_dir, "noise_floor_runs", name, run + ".json")
      record = with_raw(ablation.recorded_or_trained(cfg, model_dir, record_path), record_path,
                        model_dir)
      res = record["result"]
      dates.add(record["machine"]["date"])
      (perturbed if twin else values)[s] = res["test_bits_per_dim"]
      if not twin and "test_bits_per_dim_raw" in res:
        raw[s] = res["test_bits_per_dim_raw"]
      nonfinite += res["nonfinite_steps"]
      per_run.append(dict(recipe=recipe, seed=s, replicas=2 if twin else 1, **res))
      print(f"[{run}] test bits/dim {res['test_bits_per_dim']:.4f}", flush=True)
    v = per_recipe[recipe] = [values[s] for s in seeds]
    diffs = [abs(perturbed[s] - values[s]) for s in twins]
    rows.append({
        "recipe": recipe, "seeds": len(v), "test bpd mean": statistics.mean(v),
        "95% CI of mean": f"+- {intervals.mean_halfwidth(v):.3f}",
        "seed std": statistics.stdev(v) if len(v) > 1 else float("nan"),
        "seed std 95% CI": intervals.std_interval(v),
        "per seed": ", ".join(f"{x:.4f}" for x in v),
        "perturbation |diff| mean": statistics.mean(diffs) if diffs else float("nan"),
        "perturbation |diff| max": max(diffs) if diffs else float("nan"),
        "per twin (2 replicas)": ", ".join(f"{perturbed[s]:.4f}" for s in twins),
        "non-finite steps": nonfinite,
        "raw weights per seed": ", ".join(f"{raw[s]:.4f}" for s in seeds if s in raw),
        "averages - raw, paired": (statistics.mean(values[s] - raw[s] for s in raw)
                                   if raw else float("nan"))})
  for row in rows:
    paired = paired_to_default(per_recipe, row["recipe"])
    if paired:
      row["vs default, paired"] = paired
  notes = (f"{args.dataset} Glow, static split, {sizes} unless a recipe says otherwise; recipes "
           + "; ".join(f"`{r}`: {RECIPES[r] or 'the library defaults'}" for r in recipes)
           + f". Seeds {seeds}; twins of seeds {twins} trained with the global batch of "
           f"{sizes['batch_size']} split over 2 replicas (MirroredStrategy, 2 logical CPU "
           "devices): same data, initialisation and steps, other float summation order. Test "
           "bits/dim over the whole test split, one dequantisation pass (seed "
           f"{ablation.EVAL_SEED}), with the weights the library evaluates by default (the "
           "weight averages when the recipe keeps them; the trained weights' numbers beside "
           "them). 95% CI: Student t interval of the "
           "mean over seeds; of the seed std: chi-square interval; `vs default, paired`: mean "
           "over seeds of (recipe - default), same seed, with its t interval. Runs trained "
           f"on {', '.join(sorted(dates))}.")
  columns = ["recipe", "seeds", "test bpd mean", "95% CI of mean", "seed std",
             "seed std 95% CI", "per seed",
             *["vs default, paired"] * any("vs default, paired" in r for r in rows),
             "perturbation |diff| mean", "perturbation |diff| max", "per twin (2 replicas)",
             "non-finite steps", "raw weights per seed", "averages - raw, paired"]
  table = args.table or name
  text = results.write(table, results.command_line(), rows, columns, notes=notes,
                       results_dir=results_dir)
  results.write_json(os.path.join(results_dir, f"{table}_runs.json"), per_run)
  print(text)


if __name__ == "__main__":
  main()
