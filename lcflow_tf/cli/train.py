"""Trains a multi-scale flow (Glow/RealNVP) with a static or data-dependent (LC) split.

With no flags: a small Glow with the static split on scikit-learn's 8x8 digits (a few minutes
on two CPU cores; the split study found no data-dependent rule lower, --split=lc is the
paper's rule), then an evaluation of the final checkpoint (test bits/dim, sample grids,
LC heatmaps) in MODEL_DIR/eval.

  lcflow-train                                       # digits, runs/digits_glow
  lcflow-train --dataset=fashion_mnist --model_dir=runs/fmnist --levels=2 \\
      --steps_per_level=8 --hidden_channels=128 --train_steps=20000 \\
      --split=lc --lc_pilot_steps=2000                 # the paper's LC split

In a checkout, `python train.py` runs the same program. Paths are relative to the working
directory. Rerunning with the same --model_dir resumes from the latest checkpoint (a larger
--train_steps continues training; --lr_schedule, --lr_min_ratio, --ema_decay, the soft bounds
and --network_init default to the run's own values). The final evaluation and --export_dir=DIR
(a SavedModel of the final checkpoint, see lcflow-export; --export_version=N: TensorFlow
Serving's EXPORT_DIR/N/ layout) use the averaged weights (see --ema_decay). Bad flag values
end with a one-line `error: ...` and exit status 1, before anything is written.
"""

from absl import flags
from absl import logging

from lcflow_tf import checkpoints
from lcflow_tf import cli
from lcflow_tf import compat
from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import distribute
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import networks
from lcflow_tf import pilots
from lcflow_tf import schedules
from lcflow_tf import training
from lcflow_tf.bijectors import affine_coupling
from lcflow_tf.bijectors import factor_out
from lcflow_tf.bijectors import invertible_conv1x1

TRAIN_DEFAULTS = config_lib.TrainConfig()
MODEL_DEFAULTS = TRAIN_DEFAULTS.model  # config_lib.CPU_FLOW_DEFAULTS


def _one_of(names):
  return "one of " + ", ".join(str(n) for n in names)


flags.DEFINE_string("model_dir", "runs/digits_glow",
                    "Directory of checkpoints, config.json, TensorBoard summaries (train/) and "
                    "the final evaluation (eval/). An existing run there is resumed.")
# Flags carry types only: every value is checked once, by TrainConfig and the FlowConfig it
# holds (lcflow_tf/config.py, lcflow_tf/flows.py), which name the allowed values.
# data
flags.DEFINE_string("dataset", TRAIN_DEFAULTS.dataset,
                    f"Training data: {_one_of(data.DATASETS)}.")
flags.DEFINE_string("data_dir", None, "fashion_mnist: directory of the IDX files (default: "
                    "the Debian package's); TFDS datasets: the TFDS data directory.")
flags.DEFINE_integer("n_bits", None, "Keep the n most significant bits of 8-bit images "
                     "(1..8; default 8). Not for digits.")
flags.DEFINE_integer("pad_to", None, "Zero-pad every image to PAD_TO x PAD_TO (e.g. 32 for "
                     "Fashion-MNIST with --levels=3).")
# model (a flows.FlowConfig)
flags.DEFINE_string("architecture", MODEL_DEFAULTS.architecture,
                    f"Flow architecture: {_one_of(flows.ARCHITECTURES)}.")
flags.DEFINE_integer("levels", MODEL_DEFAULTS.levels,
                     "Levels L (L-1 junctions, where half of the channels leave); H and W must be "
                     "divisible by 2**L (glow) or 2**(L-1) (realnvp).")
flags.DEFINE_integer("steps_per_level", MODEL_DEFAULTS.steps_per_level,
                     "Flow steps K per level.")
flags.DEFINE_integer("hidden_channels", MODEL_DEFAULTS.hidden_channels,
                     "Width of the coupling networks.")
flags.DEFINE_string("coupling", MODEL_DEFAULTS.coupling,
                    f"Coupling layer type: {_one_of(flows.COUPLINGS)}.")
flags.DEFINE_string("split", MODEL_DEFAULTS.split,
                    "Split rule: which channels continue at each junction, "
                    f"{_one_of(lc.SPLITS)}: static "
                    "(channel halves; the default, see the split study), random, lc (highest "
                    "likelihood contribution stays), lc_reverse, logdet (highest carried "
                    "log-det stays), logdet_reverse, variance.")
flags.DEFINE_string("conv1x1", MODEL_DEFAULTS.conv1x1,
                    "Parametrisation of the invertible 1x1 convolutions "
                    f"(glow): {_one_of(invertible_conv1x1.PARAMETRIZATIONS)}.")
flags.DEFINE_string("split_prior", MODEL_DEFAULTS.split_prior,
                    f"Prior of the factored-out half, {_one_of(factor_out.PRIORS)} (default: "
                    "conditional for glow, standard for realnvp).")
flags.DEFINE_string("scale_fn", MODEL_DEFAULTS.scale_fn,
                    f"Scale function of affine couplings, {_one_of(affine_coupling.SCALE_FNS)} "
                    "(tanh: RealNVP's B tanh(h) with B = --max_log_scale, expands or contracts; "
                    "sigmoid: Glow's log sigmoid(h + 2), contracts only).")
flags.DEFINE_integer("resnet_blocks", MODEL_DEFAULTS.resnet_blocks,
                     "Residual blocks of the realnvp coupling networks.")
flags.DEFINE_float("max_log_scale", MODEL_DEFAULTS.max_log_scale,
                   "Soft bound of the couplings' |log scale| (default: "
                   f"{flows.DEFAULT_BOUNDS['max_log_scale']['sigmoid']:g} for the sigmoid "
                   f"scale, {flows.DEFAULT_BOUNDS['max_log_scale']['tanh']:g} for tanh); 0: "
                   "unbounded (sigmoid only: --scale_fn=sigmoid --max_log_scale=0 is Glow's "
                   "original scale).")
flags.DEFINE_string("network_init", MODEL_DEFAULTS.network_init,
                    "Initialisation of the conditioner networks' hidden layers, "
                    f"{_one_of(networks.INITS)}: uniform (U(+-1/sqrt(fan_in)) weights and "
                    "biases, PyTorch's default) or he_normal (He normal weights, zero biases; "
                    "Keras's default). Default when resuming: the run's own.")
flags.DEFINE_float("max_shift", MODEL_DEFAULTS.max_shift,
                   "Soft bound of the couplings' |shift| (default "
                   f"{flows.DEFAULT_BOUNDS['max_shift']:g}); 0: unbounded.")
flags.DEFINE_float("max_log_sigma", MODEL_DEFAULTS.max_log_sigma,
                   "Soft bound of the learned split "
                   f"prior's |log sigma| (default {flows.DEFAULT_BOUNDS['max_log_sigma']:g}); "
                   "0: unbounded.")
# LC protocol
flags.DEFINE_string("lc_pilot", TRAIN_DEFAULTS.lc_pilot,
                    "Pilot protocol of the data-dependent splits, "
                    f"{_one_of(config_lib.PILOT_PROTOCOLS)}: "
                    "nosplit (one pilot per junction, outermost first, in which that junction "
                    "and the deeper ones factor nothing out; then the model trains from fresh "
                    "weights) or static (one pilot with the static split).")
flags.DEFINE_integer("lc_pilot_steps", TRAIN_DEFAULTS.lc_pilot_steps,
                     "Steps of each pilot (statistics collected) before a data-dependent split "
                     "is fixed; counted in train_steps (nosplit: once per junction). Ignored "
                     "by static (unless --budget_matched_control) and random.")
flags.DEFINE_boolean("budget_matched_control", TRAIN_DEFAULTS.budget_matched_control,
                     "With --split=static: run the pilots of --lc_pilot anyway and fix the "
                     "static (identity) order, so the model trains the same steps from the "
                     "same point of the budget as a data-dependent split: the budget-matched "
                     "control of the split study. Alias: --static_pilots.")
flags.DEFINE_alias("static_pilots", "budget_matched_control")
flags.DEFINE_boolean("lc_reinit", TRAIN_DEFAULTS.lc_reinit,
                     "With --lc_pilot=static: after the pilot, restart from fresh weights (and "
                     "optimizer state) with the fixed split instead of continuing from the "
                     "pilot weights.")
# optimisation
flags.DEFINE_integer("train_steps", TRAIN_DEFAULTS.train_steps,
                     "Total training steps (including the pilots).")
flags.DEFINE_integer("batch_size", TRAIN_DEFAULTS.batch_size,
                     "Global batch size (split evenly over the replicas).")
flags.DEFINE_float("learning_rate", TRAIN_DEFAULTS.learning_rate, "Peak Adam learning rate.")
flags.DEFINE_integer("warmup_steps", TRAIN_DEFAULTS.warmup_steps,
                     "Linear learning-rate warm-up steps.")
flags.DEFINE_float("grad_clip_norm", TRAIN_DEFAULTS.grad_clip_norm,
                   "Clip the gradient (of the mean loss in nats per image) to this global norm: "
                   "a guard against rare explosions (a 28x28 Glow's norms grow from ~1e3 to "
                   "~4e4 while it trains; a clip that binds every step slows training).")
flags.DEFINE_string("lr_schedule", TRAIN_DEFAULTS.lr_schedule,
                    f"Learning rate after the warm-up, {_one_of(schedules.SCHEDULES)}: "
                    "constant, or a cosine / linear decay that reaches --lr_min_ratio times the "
                    "peak at --train_steps. Default when resuming: the run's own.")
flags.DEFINE_float("lr_min_ratio", TRAIN_DEFAULTS.lr_min_ratio,
                   "Floor of the cosine / linear decay as a fraction of --learning_rate, in "
                   "[0, 1). Default when resuming: the run's own.")
flags.DEFINE_float("ema_decay", TRAIN_DEFAULTS.ema_decay,
                   "Decay of the exponential moving average of the weights, in [0, 1); 0 turns "
                   "averaging off. Evaluation, sample grids and export use the averages. May "
                   "change on resume; default when resuming: the run's own.")
flags.DEFINE_integer("seed", TRAIN_DEFAULTS.seed, "Seed of the weights, the data order and the "
                     "dequantisation noise (the latter two: unless --data_seed is given).")
flags.DEFINE_integer("data_seed", TRAIN_DEFAULTS.data_seed,
                     "Seed of the data order and the dequantisation "
                     "noise alone (default: --seed), e.g. to vary them with the weights fixed.")
flags.DEFINE_integer("shuffle_buffer", TRAIN_DEFAULTS.shuffle_buffer, "Shuffle buffer (images).")
# runtime
flags.DEFINE_string("strategy", TRAIN_DEFAULTS.strategy,
                    f"{_one_of(distribute.STRATEGIES)}. auto: MirroredStrategy over all "
                    "visible GPUs (or over --cpu_replicas logical CPUs), else the default "
                    "strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_integer("cpu_replicas", TRAIN_DEFAULTS.cpu_replicas,
                     "Without GPUs, split the CPU into this many logical devices, one replica "
                     "each (to try distributed training on a CPU).")
flags.DEFINE_boolean("jit", TRAIN_DEFAULTS.jit,
                     "XLA-compile the forward/backward pass: Glow's conditioners then run as "
                     "fused matrix products (about 1.25x faster steps on CPU at the peer size, "
                     "after a longer first step).")
flags.DEFINE_boolean("mixed_precision", TRAIN_DEFAULTS.mixed_precision,
                     "Run the coupling networks in bfloat16 (Keras mixed_bfloat16 policy); "
                     "GPU only.")
flags.DEFINE_integer("log_every", TRAIN_DEFAULTS.log_every,
                     "Steps between progress lines and scalar summaries.")
flags.DEFINE_integer("checkpoint_every", TRAIN_DEFAULTS.checkpoint_every,
                     "Steps between checkpoints (one is always written at the end).")
flags.DEFINE_integer("images_every", TRAIN_DEFAULTS.images_every,
                     "Steps between TensorBoard sample grids and LC heatmaps.")
flags.DEFINE_integer("keep_checkpoints", TRAIN_DEFAULTS.keep_checkpoints, "Checkpoints kept.")
flags.DEFINE_integer("max_nonfinite_steps", TRAIN_DEFAULTS.max_nonfinite_steps,
                     "After this many consecutive non-finite steps (updates skipped), restore "
                     "the last checkpoint and lower the learning rate.")
flags.DEFINE_integer("max_nonfinite_restores", TRAIN_DEFAULTS.max_nonfinite_restores,
                     "Give up after this many such restores.")
flags.DEFINE_float("nonfinite_lr_factor", TRAIN_DEFAULTS.nonfinite_lr_factor,
                   "Learning-rate factor applied at each restore, in (0, 1).")
flags.DEFINE_boolean("eval_at_end", True, "Evaluate the final checkpoint (lcflow-eval's defaults) "
                     "into MODEL_DIR/eval.")
flags.DEFINE_string("export_dir", None, "After training, export the final checkpoint as a "
                    "SavedModel with serving signatures here (as lcflow-export does).")
flags.DEFINE_boolean("overwrite_export", False, "Replace an existing --export_dir (with "
                     "--export_version: an existing version folder).")
flags.DEFINE_integer("export_version", None, "With --export_dir: write TensorFlow Serving's "
                     "layout EXPORT_DIR/EXPORT_VERSION/ (an int >= 1; as lcflow-export --version).")

FLAGS = flags.FLAGS


def main(argv):
  """Trains as the flags say, then evaluates and exports the final checkpoint.

  Args:
    argv: what absl left of the command line after the flags (the program name only).
  """
  cli.reject_positional_arguments(argv)
  try:
    fields = config_lib.FLAG_FIELDS
    config = config_lib.TrainConfig.from_flags(**{name: FLAGS[name].value for name in fields})
    config = compat.inherit_unset(config, config_lib.read_train_config(FLAGS.model_dir),
                                  given={name for name in fields if FLAGS[name].present})
    pilots.check(config)
    if FLAGS.export_version is not None and FLAGS.export_dir is None:
      raise ValueError(f"--export_version={FLAGS.export_version} needs --export_dir (the model "
                       "base path that holds the version folders).")
    if FLAGS.export_dir is not None:  # refused before training, not after it
      export.check_export_dir(FLAGS.export_dir, FLAGS.overwrite_export,
                              protect=[FLAGS.model_dir], version=FLAGS.export_version)
    distribute.configure_cpu_replicas(config.cpu_replicas)
    trainer = training.Trainer(config, FLAGS.model_dir)
  except ValueError as e:
    cli.fail(e)
  if trainer.is_chief:
    print(f"run directory {trainer.model_dir}: checkpoints, config.json, TensorBoard events "
          f"(tensorboard --logdir {trainer.model_dir}) and, at the end, eval/", flush=True)
  try:
    result = pilots.train(trainer)
  except (training.TrainingError, checkpoints.WriteError) as e:
    cli.fail(e)
  logging.info("Training finished at step %d (%.0f images/s); checkpoint %s", result.step,
               result.images_per_sec, result.checkpoint)
  if FLAGS.eval_at_end and trainer.is_chief:
    results, path = evaluation.evaluate_model_dir(FLAGS.model_dir, dataset=trainer.dataset)
    print(f"test bits/dim ({results['weights']} weights) {results['test_bits_per_dim']:.4f} "
          f"+- {results['test_bits_per_dim_stderr']:.4f} (K={results['dequant_samples']}, "
          f"{results['num_images']} images); importance-weighted "
          f"{results['test_bits_per_dim_iw']:.4f}")
    print(f"evaluation: {path}")
    print(f"samples and LC heatmaps (PNG): {FLAGS.model_dir}/eval/")
  if FLAGS.export_dir is not None and trainer.is_chief:
    try:
      final = evaluation.load_run(FLAGS.model_dir, dataset=trainer.dataset)
      path = export.export_saved_model(final.flow, FLAGS.export_dir,
                                       num_bins=final.num_bins,
                                       overwrite=FLAGS.overwrite_export,
                                       version=FLAGS.export_version)
    except ValueError as e:
      cli.fail(e)
    print(f"SavedModel (step {final.step}): {path}")
  print(f"checkpoints and config.json: {FLAGS.model_dir}; TensorBoard: "
        f"tensorboard --logdir {FLAGS.model_dir}")


def run():
  """The `lcflow-train` console script (and `python train.py`): `main` with this usage."""
  cli.run(main, __doc__, __name__)


if __name__ == "__main__":
  run()
