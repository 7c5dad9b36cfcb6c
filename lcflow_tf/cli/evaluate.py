"""Evaluates a training run: test bits/dim, sample grids, reconstructions, LC heatmaps.

  lcflow-eval --model_dir=runs/digits_glow
  lcflow-eval --model_dir=runs/x --checkpoint=runs/x/ckpt-1000 --dequant_samples=16
  lcflow-eval --model_dir=runs/fmnist --sample_quality   # + Frechet distance per temperature
  lcflow-eval --pretrained=fashion_mnist_glow     # a model shipped with the package

In a checkout, `python eval.py` runs the same program. Paths are relative to the working
directory. --pretrained=NAME evaluates a model of `lcflow_tf.pretrained` instead of a run
(its files checked against their checksums first; output in pretrained_eval/NAME unless
--output_dir). Reads MODEL_DIR/config.json and the latest checkpoint (or --checkpoint), evaluates
its averaged weights (--weights=ema, the default; the raw ones with --weights=raw or when the
run kept no averages) on the whole held-out split and writes OUTPUT_DIR (default
MODEL_DIR/eval): results.json (all numbers, and which weights), samples_t{T}.png per
temperature, lc_level{l}.png and lc_overview.png. With --sample_quality, results.json also
gets the Frechet distance of --sample_quality_samples generated images per temperature to the
test images, on the features of a classifier trained once on the dataset's labelled training
split and cached in --classifier_dir (see lcflow_tf/sample_quality/).
"""

from absl import flags

from lcflow_tf import averaging
from lcflow_tf import cli
from lcflow_tf import config as config_lib
from lcflow_tf import evaluation
from lcflow_tf import pretrained
from lcflow_tf import sample_quality

EVAL_DEFAULTS = config_lib.EvalConfig()

flags.DEFINE_string("model_dir", "runs/digits_glow", "Run directory written by lcflow-train.")
flags.DEFINE_string("pretrained", None, "Instead of --model_dir: a pretrained model of the "
                    f"package ({', '.join(pretrained.NAMES)}).")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (e.g. MODEL_DIR/ckpt-1000); "
                    "default: the latest in --model_dir.")
flags.DEFINE_string("weights", "ema",
                    f"{' or '.join(averaging.WEIGHTS)}. ema: the weight averages (the raw "
                    "weights when the checkpoint has none, with a note); raw: the trained "
                    "weights.")
flags.DEFINE_string("output_dir", None, "Where the results go (default MODEL_DIR/eval; "
                    "pretrained_eval/NAME with --pretrained).")
flags.DEFINE_integer("dequant_samples", EVAL_DEFAULTS.dequant_samples,
                     "K dequantisation noise samples per test image.")
flags.DEFINE_integer("batch_size", EVAL_DEFAULTS.batch_size, "Evaluation batch size.")
flags.DEFINE_list("temperatures", [f"{t:g}" for t in EVAL_DEFAULTS.temperatures],
                  "Sampling temperatures of the sample grids (comma-separated, >= 0).")
flags.DEFINE_integer("num_samples", EVAL_DEFAULTS.num_samples, "Images per sample grid.")
flags.DEFINE_integer("reconstruction_images", EVAL_DEFAULTS.reconstruction_images,
                     "Test images for the encode/decode reconstruction error (0: skip).")
flags.DEFINE_integer("seed", EVAL_DEFAULTS.seed,
                     "Seed of the dequantisation noise and the samples.")
flags.DEFINE_bool("sample_quality", EVAL_DEFAULTS.sample_quality,
                  "Also compute the Frechet distance of generated to test images per "
                  "temperature (trains and caches a feature classifier on first use).")
flags.DEFINE_integer("sample_quality_samples", EVAL_DEFAULTS.sample_quality_samples,
                     "Generated images per temperature for --sample_quality (the test side "
                     "uses min(this, test set size) images).")
flags.DEFINE_string("classifier_dir", EVAL_DEFAULTS.classifier_dir,
                    "Cache directory of the feature classifier (default: "
                    "$LCFLOW_TF_CACHE or ~/.cache/lcflow_tf, then "
                    "classifiers/<dataset>_<bins>bins).")
flags.DEFINE_integer("classifier_steps", EVAL_DEFAULTS.classifier.steps,
                     "Training steps of the feature classifier (part of its cache key).")

FLAGS = flags.FLAGS


def main(argv):
  """Evaluates the run and checkpoint that the flags name and prints the headline numbers.

  Args:
    argv: what absl left of the command line after the flags (the program name only).
  """
  cli.reject_positional_arguments(argv)
  model_dir, output_dir = cli.model_dir_or_pretrained(FLAGS)
  try:
    temperatures = tuple(float(t) for t in FLAGS.temperatures)
  except ValueError:
    cli.fail("temperatures must be comma-separated numbers, got "
             f"{','.join(FLAGS.temperatures)!r}.")
  try:
    config = config_lib.EvalConfig(
        dequant_samples=FLAGS.dequant_samples, batch_size=FLAGS.batch_size,
        temperatures=temperatures, num_samples=FLAGS.num_samples,
        reconstruction_images=FLAGS.reconstruction_images, seed=FLAGS.seed,
        sample_quality=FLAGS.sample_quality,
        sample_quality_samples=FLAGS.sample_quality_samples,
        classifier_dir=FLAGS.classifier_dir,
        classifier=sample_quality.ClassifierConfig(steps=FLAGS.classifier_steps))
    results, path = evaluation.evaluate_model_dir(model_dir, config, output_dir,
                                                  FLAGS.checkpoint, weights=FLAGS.weights)
  except ValueError as e:
    cli.fail(e)
  print(f"step {results['step']} ({results['weights']} weights): test bits/dim "
        f"{results['test_bits_per_dim']:.4f} "
        f"+- {results['test_bits_per_dim_stderr']:.4f} (K={results['dequant_samples']}, "
        f"{results['num_images']} images); importance-weighted "
        f"{results['test_bits_per_dim_iw']:.4f}; reconstruction max abs error "
        f"{results.get('reconstruction_max_abs_error', float('nan')):.2e}")
  if "sample_quality" in results:
    print(sample_quality.summary(results["sample_quality"]))
  print(f"results: {path}")


def run():
  """The `lcflow-eval` console script (and `python eval.py`): `main` with this usage."""
  cli.run(main, __doc__, __name__)


if __name__ == "__main__":
  run()
