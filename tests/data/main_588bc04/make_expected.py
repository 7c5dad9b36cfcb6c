"""Writes expected.npz: outputs of main's library (588bc04) for the fixture run (README.md)."""
import dataclasses
import shutil
import sys
import tempfile

import numpy as np

from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import training

run_dir, out = sys.argv[1], sys.argv[2]
digits = data.load_dataset("digits")
images = np.stack([np.arange(64).reshape(8, 8, 1) % 17, np.full((8, 8, 1), 16),
                   np.zeros((8, 8, 1))]).astype(np.uint8)
x = (images.astype(np.float32) + 0.5) / 17
expected = {"images": images}
for weights in ("ema", "raw"):
  run = evaluation.load_run(run_dir, dataset=digits, weights=weights)
  assert run.weights == weights
  expected[f"log_prob_{weights}"] = run.flow.log_prob(x).numpy()
  expected[f"encoded_{weights}"] = run.flow.encode(x).numpy()
  expected["step"] = run.step
# Resumed from ckpt-4 to step 6 (train.py --train_steps=6 with the run's other flags).
resumed_dir = tempfile.mkdtemp()
shutil.copytree(run_dir, resumed_dir, dirs_exist_ok=True)
config = dataclasses.replace(config_lib.read_train_config(resumed_dir), train_steps=6)
result = training.Trainer(config, resumed_dir, dataset=digits).train()
expected["resumed_steps"] = np.array(sorted(result.losses))
expected["resumed_losses"] = np.array([result.losses[s] for s in sorted(result.losses)])
for weights in ("ema", "raw"):
  run = evaluation.load_run(resumed_dir, dataset=digits, weights=weights)
  expected[f"resumed_log_prob_{weights}"] = run.flow.log_prob(x).numpy()
shutil.rmtree(resumed_dir)
np.savez(out, **expected)
