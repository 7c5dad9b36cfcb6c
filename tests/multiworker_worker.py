"""One worker of tests/test_multiworker.py (also the single-worker reference run).

  python tests/multiworker_worker.py MODEL_DIR OUT.npz CONFIG_JSON

Trains `TrainConfig.from_dict(json.loads(CONFIG_JSON))` on digits with
`lcflow_tf.training.Trainer`, driven by `lcflow_tf.pilots.train` (the strategy from
`config.strategy`; `multi_worker` reads TF_CONFIG) and writes OUT.npz: `steps`, `losses`
(per step, nats/image), `step`, `num_replicas`, `is_chief`, the final trainable variables as
`w0, w1, ...` and their weight averages as `a0, a1, ...` (none when `ema_decay` is 0).
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top

from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
from lcflow_tf import data  # pylint: disable=g-import-not-at-top
from lcflow_tf import distribute  # pylint: disable=g-import-not-at-top
from lcflow_tf import pilots  # pylint: disable=g-import-not-at-top
from lcflow_tf import training  # pylint: disable=g-import-not-at-top


def main(model_dir, out, config_json):
  config = config_lib.TrainConfig.from_dict(json.loads(config_json))
  strategy = distribute.make_strategy(config.strategy)  # first: MWMS must precede other TF ops
  trainer = training.Trainer(config, model_dir, strategy=strategy,
                             dataset=data.load_dataset("digits"))
  result = pilots.train(trainer)
  steps = sorted(result.losses)
  weights = {f"w{i}": v.numpy() for i, v in enumerate(trainer.flow.trainable_variables)}
  if trainer.averages is not None:
    weights.update({f"a{i}": v.numpy() for i, v in enumerate(trainer.averages.values)})
  np.savez(out, steps=np.array(steps), losses=np.array([result.losses[s] for s in steps]),
           step=result.step, num_replicas=strategy.num_replicas_in_sync,
           is_chief=trainer.is_chief, **weights)


if __name__ == "__main__":
  main(*sys.argv[1:])
