"""Exports a training run as a SavedModel with serving signatures (lcflow_tf/export.py).

  lcflow-export --model_dir=runs/digits_glow --export_dir=exports/digits
  lcflow-export --model_dir=runs/x --checkpoint=runs/x/ckpt-1000 --export_dir=OUT --overwrite
  lcflow-export --model_dir=runs/x --export_dir=models/lcflow --version=1   # TF Serving
  lcflow-export --pretrained=fashion_mnist_glow --export_dir=exports/fmnist  # a shipped model
  lcflow-export --upgrade=OLD_EXPORT --export_dir=NEW    # re-save an older lcflow_tf's export
  lcflow-export --model_dir=runs/x --export_dir=OUT --precision=float64  # float64 inside

In a checkout, `python export.py` runs the same program. Paths are relative to the working
directory. --pretrained=NAME exports a model of `lcflow_tf.pretrained` instead of a run (its
files checked against their checksums first). Reads MODEL_DIR/config.json and the latest
checkpoint (or --checkpoint), takes its averaged weights (--weights=ema, the default;
--weights=raw for the trained ones) and writes,
atomically, a SavedModel whose signatures (`log_prob`/`serving_default`, `sample`, `encode`,
`decode`) load with `tf.saved_model.load`, `saved_model_cli run` and TensorFlow Serving. With
--version=N the SavedModel goes to EXPORT_DIR/N (TensorFlow Serving's model base path layout;
other versions there are kept). --upgrade re-saves an export of an older lcflow_tf, which only
`tf.saved_model.load` can run, into one that every loader runs (same outputs). An existing
destination is refused unless --overwrite. Errors end with a one-line `error: ...` and exit
status 1.
"""

from absl import flags

from lcflow_tf import averaging
from lcflow_tf import cli
from lcflow_tf import compat
from lcflow_tf import evaluation
from lcflow_tf import export
from lcflow_tf import pretrained

flags.DEFINE_string("model_dir", None, "Run directory written by lcflow-train.")
flags.DEFINE_string("pretrained", None, "Instead of --model_dir: a pretrained model of the "
                    f"package ({', '.join(pretrained.NAMES)}).")
flags.DEFINE_string("export_dir", None, "Where the SavedModel goes (a new directory); with "
                    "--version, the model base path that holds the version folders.")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (e.g. MODEL_DIR/ckpt-1000); "
                    "default: the latest in --model_dir.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing --export_dir (with --version: "
                     "an existing version folder).")
flags.DEFINE_integer("version", None, "Write TensorFlow Serving's layout EXPORT_DIR/VERSION/ "
                     "(an int >= 1); other version folders in EXPORT_DIR are kept.")
flags.DEFINE_string("upgrade", None, "Instead of --model_dir: an export of an older "
                    "lcflow_tf to re-save, unchanged, so that saved_model_cli run and "
                    "TensorFlow Serving can run it.")
flags.DEFINE_string("weights", "ema",
                    f"{' or '.join(averaging.WEIGHTS)}. ema: the weight averages (the raw "
                    "weights when the checkpoint has none, with a note); raw: the trained "
                    "weights. Not for --upgrade.")
flags.DEFINE_enum("precision", "float32", ["float32", "float64"],
                  "What the exported model computes in. float64 exports a float64 copy of the "
                  "model (lcflow_tf.Flow.astype): the signatures' inputs and outputs keep "
                  "their dtypes, so an encode -> decode round trip through the export loses "
                  "only the float32 rounding of the latent (where float32 throughout can move "
                  "a pixel), at float64's cost in speed; seeded samples differ from the "
                  "float32 export's. Not for --upgrade.")
flags.mark_flags_as_required(["export_dir"])

FLAGS = flags.FLAGS


def main(argv):
  """Exports the run (or upgrades the export) that the flags name.

  Args:
    argv: what absl left of the command line after the flags (the program name only).
  """
  cli.reject_positional_arguments(argv)
  if FLAGS.upgrade is not None and FLAGS.pretrained is not None:
    cli.fail("give one of --pretrained (export a shipped model) and --upgrade (re-save an "
             "older export).")
  if FLAGS.upgrade is None and FLAGS.model_dir is None and FLAGS.pretrained is None:
    cli.fail("give --model_dir (export a training run), --pretrained (a shipped model) or "
             "--upgrade (re-save an older export).")
  if FLAGS.upgrade is None:
    model_dir, _ = cli.model_dir_or_pretrained(FLAGS)
  elif FLAGS.model_dir is not None:
    cli.fail("give exactly one of --model_dir (export a training run) and --upgrade "
             "(re-save an older export).")
  if FLAGS.upgrade is not None and FLAGS.checkpoint is not None:
    cli.fail("--checkpoint belongs to --model_dir; --upgrade re-saves an export as it is.")
  if FLAGS.upgrade is not None and FLAGS["weights"].present:
    cli.fail("--weights belongs to --model_dir; --upgrade re-saves an export's weights as "
             "they are.")
  if FLAGS.upgrade is not None and FLAGS["precision"].present:
    cli.fail("--precision belongs to --model_dir; --upgrade re-saves an export as it is.")
  try:
    if FLAGS.upgrade is not None:
      path = compat.upgrade_saved_model(FLAGS.upgrade, FLAGS.export_dir,
                                        overwrite=FLAGS.overwrite, version=FLAGS.version)
      print(f"upgraded {FLAGS.upgrade} to {path}; signatures: {', '.join(export.SIGNATURES)}")
      return
    export.check_export_dir(FLAGS.export_dir, FLAGS.overwrite,  # before loading anything
                            protect=[model_dir], version=FLAGS.version)
    loaded = evaluation.load_run(model_dir, FLAGS.checkpoint, weights=FLAGS.weights)
    flow = loaded.flow if loaded.flow.dtype.name == FLAGS.precision else loaded.flow.astype(
        FLAGS.precision)
    path = export.export_saved_model(flow, FLAGS.export_dir, num_bins=loaded.num_bins,
                                     overwrite=FLAGS.overwrite, version=FLAGS.version)
  except ValueError as e:
    cli.fail(e)
  print(f"exported step {loaded.step} ({loaded.checkpoint}, computing in {flow.dtype.name}) to "
        f"{path}; signatures: "
        f"{', '.join(export.SIGNATURES)}")


def run():
  """The `lcflow-export` console script (and `python export.py`): `main` with this usage."""
  cli.run(main, __doc__, __name__)


if __name__ == "__main__":
  run()
