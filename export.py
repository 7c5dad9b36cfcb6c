"""Exports a training run as a SavedModel with serving signatures (lcflow_tf/export.py).

  python export.py --model_dir=runs/digits_glow_lc --export_dir=exports/digits
  python export.py --model_dir=runs/x --checkpoint=runs/x/ckpt-1000 --export_dir=OUT --overwrite

Reads MODEL_DIR/config.json and the latest checkpoint (or --checkpoint), takes its averaged
weights (--weights=ema, the default; --weights=raw for the trained ones) and writes, atomically,
a SavedModel whose signatures (`log_prob`/`serving_default`, `sample`, `encode`, `decode`)
load with plain `tf.saved_model.load`. An existing --export_dir is refused unless --overwrite.
Errors end with a one-line `error: ...` and exit status 1.
"""

from absl import app
from absl import flags

from lcflow_tf import averaging
from lcflow_tf import cli
from lcflow_tf import evaluation
from lcflow_tf import export

flags.DEFINE_string("model_dir", None, "Run directory written by train.py.")
flags.DEFINE_string("export_dir", None, "Where the SavedModel goes (a new directory).")
flags.DEFINE_string("checkpoint", None, "Checkpoint prefix (e.g. MODEL_DIR/ckpt-1000); "
                    "default: the latest in --model_dir.")
flags.DEFINE_boolean("overwrite", False, "Replace an existing --export_dir.")
flags.DEFINE_enum("weights", "ema", averaging.WEIGHTS,
                  "ema: the weight averages (the raw weights when the checkpoint has none, "
                  "with a note); raw: the trained weights.")
flags.mark_flags_as_required(["model_dir", "export_dir"])

FLAGS = flags.FLAGS


def main(argv):
  cli.reject_positional_arguments(argv)
  try:
    export.check_export_dir(FLAGS.export_dir, FLAGS.overwrite,  # before loading anything
                            protect=[FLAGS.model_dir])
    run = evaluation.load_run(FLAGS.model_dir, FLAGS.checkpoint, weights=FLAGS.weights)
    path = export.export_saved_model(run.flow, FLAGS.export_dir, num_bins=run.dataset.num_bins,
                                     overwrite=FLAGS.overwrite)
  except ValueError as e:
    cli.fail(e)
  print(f"exported step {run.step} ({run.checkpoint}) to {path}; signatures: "
        f"{', '.join(export.SIGNATURES)}")


if __name__ == "__main__":
  app.run(main)
