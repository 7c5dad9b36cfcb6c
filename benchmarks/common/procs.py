"""Worker processes driven over JSON lines, without TensorFlow (usable from any Python venv).

A benchmark script re-runs itself (or a worker script) with `--worker ...`; the worker builds
one model and answers requests (`{"cmd": ..., **args}` per line on stdin, one JSON object per
line back). Running each model in its own process keeps its peak memory (max RSS) its own,
and a parent that sends requests to two workers in turn measures them alternately, so neither
competes with the other for the cores and slow drifts of a shared machine hit both alike. A
worker may run under another Python (e.g. a PyTorch venv): `Worker(..., python=...)`.
"""

import json
import os
import resource
import subprocess
import sys


def peak_rss_mb():
  """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
  """Current resident memory of this process, in MiB."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024.0
  return float("nan")


class Worker:
  """A worker process of `script`; `request` sends one command and returns its answer.

  Args:
    script: path of the Python script to run.
    args: its command-line arguments.
    name: the worker's name in error messages.
    python: the interpreter to run it with (default: this one, `sys.executable`).
    env: environment variables to set for it, on top of this process's.
  """

  def __init__(self, script, args, name, python=None, env=None):
    self.name = name
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               **(env or {}))
    self._proc = subprocess.Popen([python or sys.executable, script] + list(args),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)
    self._ready = None

  @property
  def ready(self):
    """The worker's first answer, once it is set up (waits for it)."""
    if self._ready is None:
      self._ready = self._read()
    return self._ready

  def request(self, cmd, **kwargs):
    self.ready  # pylint: disable=pointless-statement
    self._proc.stdin.write(json.dumps(dict(kwargs, cmd=cmd)) + "\n")
    self._proc.stdin.flush()
    return self._read()

  def close(self):
    """Asks the worker to quit; returns its last answer."""
    answer = self.request("quit")
    self._proc.wait(timeout=60)
    return answer

  def kill(self):
    """Ends the worker process if it is still running (after a failure elsewhere)."""
    if self._proc.poll() is None:
      self._proc.kill()
      self._proc.wait(timeout=60)

  def _read(self):
    line = self._proc.stdout.readline()
    if not line:
      code = self._proc.wait()
      raise RuntimeError(f"worker {self.name!r} exited with code {code} (its stderr is above).")
    answer = json.loads(line)
    if "error" in answer:
      raise RuntimeError(f"worker {self.name!r} failed: {answer['error']}")
    return answer


def serve(ready, handlers):
  """Worker side: reports `ready`, then answers requests with `handlers[cmd](**args)` until quit.

  Whatever libraries print goes to stderr; stdout carries only the answers. `quit` answers
  with the peak RSS.
  """
  channel = os.fdopen(os.dup(sys.stdout.fileno()), "w")
  os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
  sys.stdout = sys.stderr

  def answer(obj):
    channel.write(json.dumps(obj) + "\n")
    channel.flush()

  answer(ready)
  for line in sys.stdin:
    request = json.loads(line)
    cmd = request.pop("cmd")
    if cmd == "quit":
      answer({"peak_rss_mb": peak_rss_mb()})
      return
    try:
      answer(handlers[cmd](**request))
    except Exception as e:  # Report it to the parent, then stop this worker.
      answer({"error": f"{cmd}: {type(e).__name__}: {e}"})
      raise


def run_worker(script, args, name):
  """Runs a worker that does its whole job while setting up; returns its answer + peak RSS."""
  worker = Worker(script, args, name)
  return dict(worker.ready, **worker.close())
