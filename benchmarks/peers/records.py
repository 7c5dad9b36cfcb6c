"""The peer benchmark's per-model records: their names, where they live, when one is reused.

One record per (row, model): docs/results/peer_runs/<name>/<row>_<model>.json holds the
configuration the model trained with (`record_key`), the command, the machine and the result.
A model trained only as the throughput reference of others (`--partners`) is recorded under
partners/<row>_<model>_with_<others>.json and never replaces its own record.

benchmarks/peers/peer_glow.py trains and writes the records; benchmarks/peers/peer_report.py
turns them into tables. Both read them through this module, which imports neither.
"""

import json
import os

MODELS = ("ours", "tfp", "normflows")
ROWS = ("best", "identical", "noclip", "clip1000")
PARTNERS_DIR = "partners"


def record_key(config, model, row):
  """Everything a model's result depends on: a record is reused only if this is equal.

  `config`: the invocation's settings (`peer_glow.Config`: sizes, seeds, `worker_config`).
  """
  return {"model": model, "row": row, "dataset": config.dataset,
          "worker": config.worker_config(model, row), "batch": config.batch,
          "chunk_steps": config.chunk_steps, "warmup_steps": config.warmup_steps,
          "eval_seed": config.eval_seed, "temperatures": list(config.temperatures),
          "quality_samples": config.quality_samples,
          "reconstruction_samples": config.reconstruction_samples}


def record_path(records_dir, model, row, alongside=None):
  """A model's record of a row; with `alongside` (the sitting's models), a partner's record."""
  if alongside is None:
    return os.path.join(records_dir, f"{row}_{model}.json")
  others = "+".join(m for m in alongside if m != model)
  return os.path.join(records_dir, PARTNERS_DIR, f"{row}_{model}_with_{others}.json")


def stored_record(records_dir, config, model, row, alongside=None):
  """The record of (model, row) if its configuration is the one this run would train.

  With `alongside`, the partner record of that sitting (`record_path`).
  """
  path = record_path(records_dir, model, row, alongside)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  return record if record.get("config") == record_key(config, model, row) else None
