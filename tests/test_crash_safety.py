"""train.py survives SIGKILL at any moment: it resumes from the latest complete checkpoint.

One tiny run (LC split, a static-split pilot of 4 steps in the run's own directory -- the
nosplit protocol's pilot sub-runs and their resume are tested in test_training.py -- a
checkpoint every 2 steps) is killed with SIGKILL
11 times at seeded random moments -- during start-up / restore, between steps, while TF writes
a checkpoint's shards (`ckpt-N_temp/` present) and while it replaces the `checkpoint` state
file (`checkpoint.tmp*` present) -- and restarted each time. Then it runs to the end and the
model is evaluated.

Each run of train.py is a fork of one process that imported train.py and TensorFlow once
(`cli_runner.Launcher`; TensorFlow's runtime starts in each run), so a start-up kill lands
while the run sets up its devices, builds the model or restores a checkpoint, not while Python
imports TensorFlow (10 s per run on two busy cores, and nothing is written then).
"""

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import evaluation
from tests import cli_runner

FLAGS = ["--levels=2", "--steps_per_level=1", "--hidden_channels=8", "--batch_size=16",
         "--split=lc", "--lc_pilot=static", "--lc_pilot_steps=4", "--warmup_steps=2",
         "--log_every=1", "--checkpoint_every=2", "--keep_checkpoints=3", "--images_every=1000000",
         "--noeval_at_end"]
LONG = "--train_steps=1000000"  # never reached: every run but the last one is killed
KILLS = ["startup"] * 2 + ["steps"] * 4 + ["shards"] * 3 + ["state"] * 2
WAIT_S = 90
STEP_LINE = re.compile(r"step (\d+)/\d+ ")


@pytest.fixture(name="launch")
def launch_fixture():
  """launch(model_dir, log_path, *extra): train.py with FLAGS in a fork (`cli_runner.Launcher`),
  stdout and stderr to log_path; a Popen-like handle."""
  launcher = cli_runner.Launcher("train.py")

  def launch(model_dir, log_path, *extra):
    return launcher.start([f"--model_dir={model_dir}", *FLAGS, *extra], log_path,
                          cwd=os.path.dirname(log_path))

  yield launch
  launcher.close()


def listed_checkpoints(model_dir):
  """Checks the checkpoints listed in `model_dir/checkpoint`; returns the latest one's step
  (None before the first).

  The latest one, and every listed one whose `.index` exists, must read completely (index,
  every tensor, checksums). A listed one may have lost its `.index`: CheckpointManager
  rewrites the list after deleting the checkpoints beyond `keep_checkpoints` (index first,
  then data), so a kill in between leaves them listed; they must be older than the latest.
  """
  state = tf.train.get_checkpoint_state(str(model_dir))
  latest = tf.train.latest_checkpoint(str(model_dir))
  if state is None:
    assert latest is None
    return None
  assert latest == state.model_checkpoint_path
  latest_step = int(latest.rsplit("-", 1)[1])
  for path in state.all_model_checkpoint_paths:
    step = int(path.rsplit("-", 1)[1])
    if not os.path.exists(path + ".index"):
      assert step < latest_step, (path, latest)  # being swept, never the latest
      continue
    reader = tf.train.load_checkpoint(path)  # the index parses
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)  # every tensor is there and passes its checksum
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == step
  return latest_step


def kill_at(proc, mode, rng, model_dir, log_path):
  """Waits for the moment `mode` picks, SIGKILLs `proc`; returns True when the kill provably
  hit a checkpoint write (its temporary files are still there afterwards)."""
  deadline = time.time() + WAIT_S

  def wait_until(condition, poll_s):
    while not condition():
      if proc.poll() is not None:
        pytest.fail(f"train.py exited ({proc.returncode}) before the kill ({mode}):\n"
                    + log_path.read_text()[-4000:])
      if time.time() > deadline:
        proc.kill()
        pytest.fail(f"no moment for a '{mode}' kill within {WAIT_S}s:\n"
                    + log_path.read_text()[-4000:])
      time.sleep(poll_s)

  def training():
    return STEP_LINE.search(log_path.read_text()) is not None

  def matching(prefix, suffix):
    try:
      names = os.listdir(model_dir)
    except FileNotFoundError:
      return set()
    return {n for n in names if n.startswith(prefix) and n.endswith(suffix)}

  if mode == "startup":  # importing, building, restoring, or the first steps
    time.sleep(rng.uniform(0.3, 5.0))
    wait_until(lambda: True, 0)
  else:
    wait_until(training, 0.01)
    if mode == "steps":
      time.sleep(rng.uniform(0.0, 0.6))
    else:
      prefix, suffix = ("ckpt-", "_temp") if mode == "shards" else ("checkpoint.tmp", "")
      leftovers = matching(prefix, suffix)  # of earlier kills: they do not count
      wait_until(lambda: matching(prefix, suffix) - leftovers, 0.0002)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  if mode in ("shards", "state"):
    return bool(matching(prefix, suffix) - leftovers)
  return False


@pytest.mark.slow
def test_sigkill_at_random_moments_always_resumes_from_the_latest_complete_checkpoint(tmp_path,
                                                                                    launch):
  rng = np.random.default_rng(7)
  model_dir = tmp_path / "run"
  modes = [str(m) for m in rng.permutation(KILLS)]
  newest, during_writes, resumes = None, 0, 0
  for i, mode in enumerate(modes):
    latest = listed_checkpoints(model_dir)
    if newest is not None:  # never goes back past a checkpoint once written
      assert latest is not None and latest >= newest, (i, mode, latest, newest)
    newest = latest
    log_path = tmp_path / f"run{i}.log"
    proc = launch(model_dir, log_path, LONG)
    during_writes += kill_at(proc, mode, rng, model_dir, log_path)
    log = log_path.read_text()
    assert "Traceback" not in log, log[-4000:]
    resumed = [int(s) for s in re.findall(r"Resuming from step (\d+) ", log)]
    steps = [int(s) for s in STEP_LINE.findall(log)]
    if latest is None:
      assert resumed == [], log[-4000:]
    else:
      assert resumed in ([], [latest]), (mode, resumed, latest)
      assert resumed or not steps, log[-4000:]  # no training without the restore
      resumes += bool(resumed)
    if steps:  # the run continued right after the checkpoint it restored
      assert steps == list(range((latest or 0) + 1, (latest or 0) + 1 + len(steps))), steps
  assert resumes >= 6, resumes
  assert during_writes >= 2, during_writes  # kills that provably hit a checkpoint write

  # The last run goes to the end from wherever the kills left it.
  latest = listed_checkpoints(model_dir)
  assert latest is not None and latest >= newest
  end = latest + 4
  log_path = tmp_path / "final.log"
  proc = launch(model_dir, log_path, f"--train_steps={end}")
  try:
    proc.wait(timeout=WAIT_S)
  except subprocess.TimeoutExpired:
    proc.kill()
    pytest.fail("the final run did not finish:\n" + log_path.read_text()[-4000:])
  log = log_path.read_text()
  assert proc.returncode == 0, log[-4000:]
  assert f"Resuming from step {latest} " in log
  assert STEP_LINE.findall(log) == [str(s) for s in range(latest + 1, end + 1)]
  assert listed_checkpoints(model_dir) == end

  run = evaluation.load_run(str(model_dir))
  assert run.step == end and bool(run.flow.split_fixed.numpy())
  bpd = evaluation.held_out_bits_per_dim(run.flow, run.dataset.test().take(32),
                                         run.dataset.num_bins, dequant_samples=1)
  assert np.all(np.isfinite(bpd["per_image"])) and 1.0 < bpd["bits_per_dim"] < 8.0


def test_a_checkpoint_that_cannot_be_written_ends_in_one_line_naming_the_last_intact_one(
    digits, tmp_path):
  """No space left (as TensorFlow reports it from SaveV2): the half-written shards are
  removed, the checkpoints before are untouched, and the error is one line that names the
  last intact checkpoint (train.py prints it as `error: ...`, exit status 1)."""
  from lcflow_tf import checkpoints  # pylint: disable=g-import-not-at-top
  from lcflow_tf import config as config_lib  # pylint: disable=g-import-not-at-top
  from lcflow_tf import training  # pylint: disable=g-import-not-at-top
  config = config_lib.TrainConfig.from_flags(
      levels=2, steps_per_level=1, hidden_channels=8, batch_size=16, train_steps=4,
      warmup_steps=2, checkpoint_every=2, images_every=10 ** 6, split="static")
  trainer = training.Trainer(config, str(tmp_path / "run"), dataset=digits)
  manager = trainer.checkpoints._manager  # pylint: disable=protected-access
  real_save = manager.save

  def full_disk(checkpoint_number):
    os.makedirs(tmp_path / "run" / f"ckpt-{checkpoint_number}_temp", exist_ok=True)
    if checkpoint_number >= 4:
      raise tf.errors.ResourceExhaustedError(
          None, None, "{{function_node __wrapped__SaveV2_dtypes_397_device_/job:localhost/"
          "replica:0/task:0/device:CPU:0}} /x/ckpt-4_temp/part-0; No space left on device "
          "[Op:SaveV2]")
    return real_save(checkpoint_number=checkpoint_number)

  manager.save = full_disk
  with pytest.raises(checkpoints.WriteError) as raised:
    trainer.train()
  message = str(raised.value)
  assert "\n" not in message
  assert re.fullmatch(
      r"cannot write the checkpoint of step 4 to .*/run \(ResourceExhaustedError: /x/ckpt-4_temp/"
      r"part-0; No space left on device \[Op:SaveV2\]\); the last intact checkpoint is "
      r".*/run/ckpt-2, and rerunning the same command resumes from it once the problem is "
      r"fixed\.", message), message
  assert not (tmp_path / "run" / "ckpt-4_temp").exists()
  assert tf.train.latest_checkpoint(str(tmp_path / "run")).endswith("ckpt-2")
