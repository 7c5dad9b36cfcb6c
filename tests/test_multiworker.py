"""MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 train like one worker.

Each worker is `tests/multiworker_worker.py` (a `Trainer` on digits) or
`tests/keras_multiworker_worker.py` (`FlowModel.fit`) with its own TF_CONFIG; the reference
is the same run with the default strategy and the same global batch.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from lcflow_tf import config as config_lib
from lcflow_tf import data
from lcflow_tf import pilots
from lcflow_tf import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "multiworker_worker.py")
KERAS_WORKER = os.path.join(REPO, "tests", "keras_multiworker_worker.py")
TINY = dict(levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=6,
            lc_pilot_steps=3, warmup_steps=2, log_every=2, checkpoint_every=3, images_every=100,
            shuffle_buffer=256, split="lc", lc_pilot="static")
TIMEOUT_S = 240


def free_ports(n):
  """n distinct free TCP ports on 127.0.0.1 (bound to port 0, then released)."""
  sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def start_workers(tmp_path, *args, worker=WORKER):
  """Starts `worker` twice as the two workers of one cluster; `args` go to both, with
  `tmp_path/worker<i>.npz` after the first one."""
  workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
  procs = []
  for index in range(2):
    tmp = tmp_path / f"tmp{index}"  # where a non-chief Trainer puts its throw-away files
    tmp.mkdir()
    tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(tmp),
           "TF_CONFIG": json.dumps(tf_config)}
    log = open(tmp_path / f"worker{index}.log", "w")  # pylint: disable=consider-using-with
    procs.append((subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, worker, str(args[0]), str(tmp_path / f"worker{index}.npz"),
         *map(str, args[1:])], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT), log))
  return procs


def wait_for(procs, tmp_path, deadline):
  def logs():
    return "\n".join(f"--- worker {i} ---\n" + (tmp_path / f"worker{i}.log").read_text()[-4000:]
                     for i in range(len(procs)))

  try:
    for proc, _ in procs:
      proc.wait(timeout=max(deadline - time.time(), 1))
  except subprocess.TimeoutExpired:
    for proc, _ in procs:
      proc.kill()
      proc.wait()
    pytest.fail(f"workers did not finish within {TIMEOUT_S}s:\n{logs()}")
  finally:
    for _, log in procs:
      log.close()
  for i, (proc, _) in enumerate(procs):
    assert proc.returncode == 0, f"worker {i} exited with {proc.returncode}:\n{logs()}"


@pytest.mark.slow
def test_two_workers_match_one_worker_with_the_same_global_batch(tmp_path):
  """Two workers x 1 replica (8 images each) vs. one device (16 images), same 6 steps (LC
  pilot of 3, then the fixed split).

  Tolerances: the two workers' final weights and weight averages are exactly equal (both
  apply the same all-reduced update); the per-step losses equal the single-worker ones to rtol
  1e-4 (measured ~5e-6: only the summation order of the all-reduce differs), the final
  weights and averages to atol 1e-3 (measured ~5e-5 after 6 Adam steps).
  """
  config = config_lib.TrainConfig.from_flags(**TINY, strategy="multi_worker")
  model_dir = tmp_path / "run"
  procs = start_workers(tmp_path, model_dir, json.dumps(config.to_dict()))
  deadline = time.time() + TIMEOUT_S

  # Meanwhile, the single-worker reference in this process.
  reference = training.Trainer(config_lib.TrainConfig.from_flags(**TINY, strategy="default"),
                               str(tmp_path / "reference"), dataset=data.load_dataset("digits"))
  ref_result = pilots.train(reference)
  ref_weights = [v.numpy() for v in reference.flow.trainable_variables]
  ref_averages = [v.numpy() for v in reference.averages.values]

  wait_for(procs, tmp_path, deadline)
  chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
  assert bool(chief["is_chief"]) and not bool(other["is_chief"])
  assert int(chief["num_replicas"]) == int(other["num_replicas"]) == 2
  assert int(chief["step"]) == int(other["step"]) == 6
  names = sorted((k for k in chief.files if k.startswith("w")), key=lambda k: int(k[1:]))
  assert len(names) == len(ref_weights)
  for name in names:  # identical across workers
    np.testing.assert_array_equal(chief[name], other[name])
  np.testing.assert_array_equal(chief["steps"], np.arange(1, 7))
  np.testing.assert_array_equal(chief["losses"], other["losses"])
  np.testing.assert_allclose(chief["losses"], [ref_result.losses[s] for s in range(1, 7)],
                             rtol=1e-4)
  for name, ref in zip(names, ref_weights):
    np.testing.assert_allclose(chief[name], ref, rtol=0, atol=1e-3, err_msg=name)
  averages = [f"a{name[1:]}" for name in names]
  assert set(averages) <= set(chief.files)
  for name, ref in zip(averages, ref_averages):
    np.testing.assert_array_equal(chief[name], other[name])
    np.testing.assert_allclose(chief[name], ref, rtol=0, atol=1e-3, err_msg=name)
  assert any(not np.allclose(chief[a], chief[w], rtol=0, atol=1e-5)
             for a, w in zip(averages, names))  # the averages are not just the weights

  # Only the chief wrote into model_dir: its checkpoints and one TensorBoard events file; the
  # other worker's throw-away checkpoint directory is gone.
  assert sorted(os.listdir(model_dir)) == [
      "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
      "ckpt-6.data-00000-of-00001", "ckpt-6.index", "config.json", "train"]
  assert len(os.listdir(model_dir / "train")) == 1
  assert os.listdir(tmp_path / "tmp1") == []


@pytest.mark.slow
def test_flow_model_fit_on_two_workers_matches_one_worker(tmp_path):
  """`FlowModel.fit` on `keras_model.train_stream`: two workers x 1 replica (8 images each)
  follow one worker with the global batch (16 images) for 6 steps.

  Tolerances as for the Trainer: losses rtol 1e-4, final weights atol 1e-3; the two workers'
  weights exactly equal.
  """
  procs = start_workers(tmp_path, 6, worker=KERAS_WORKER)
  deadline = time.time() + TIMEOUT_S
  reference = tmp_path / "reference.npz"
  subprocess.run([sys.executable, KERAS_WORKER, "6", str(reference), "default"], cwd=REPO,
                 env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"},
                 check=True, capture_output=True, timeout=TIMEOUT_S)
  wait_for(procs, tmp_path, deadline)
  ref = np.load(reference)
  chief, other = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
  assert int(chief["num_replicas"]) == 2 and int(ref["num_replicas"]) == 1
  np.testing.assert_array_equal(chief["losses"], other["losses"])
  np.testing.assert_allclose(chief["losses"], ref["losses"], rtol=1e-4)
  names = [k for k in ref.files if k.startswith("w")]
  assert len(names) > 10
  for name in names:
    np.testing.assert_array_equal(chief[name], other[name])
    np.testing.assert_allclose(chief[name], ref[name], rtol=0, atol=1e-3, err_msg=name)
