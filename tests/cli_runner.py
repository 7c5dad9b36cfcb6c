"""Runs many command lines of one script (train.py, eval.py, export.py) with one start-up.

Importing TensorFlow and a script costs 5-15 s per process on two cores, so a test file that
runs dozens of command lines would spend most of its time starting Python. `run_many` starts
one process per call that imports the script once (its flags defined, TensorFlow imported but
its runtime not started: no op has run, no device exists) and forks a child per command line.
Each child sets its working directory and environment, then runs the script's `main` through
`absl.app.run` with its own argv, as `python script.py ARGS` would; its exit status, stdout
and stderr come back as a `subprocess.CompletedProcess`. TensorFlow's runtime starts in each
child, so one command line's devices or state never reach another's.

`Launcher` starts command lines one at a time in forks of such a process and hands each back
like a `subprocess.Popen` (pid, poll, wait, kill): for tests that kill a run at chosen moments
(tests/test_crash_safety.py) and restart it many times. `Launcher()` without a script serves
all of `SCRIPTS`: its process imports what their programs import (TensorFlow, absl,
lcflow_tf), and each child imports the script of its command line, so one test can run
train.py, then eval.py, with one start-up. A script only imports its program, the module of
`lcflow_tf.cli` that defines its flags and `main`; the programs' flags cannot be defined in
one process together.

Run as a script by `run_many` and `Launcher` only: `python tests/cli_runner.py REQUEST.json
RESULTS.json`, `python tests/cli_runner.py --serve SCRIPT|-`.
"""

import ast
import importlib
import importlib.util
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("train.py", "eval.py", "export.py")


def command(*args, cwd=REPO, env=None, timeout=300):
  """One command line for `run_many`: flags `args`, run in `cwd` with `env` added.

  Args:
    *args: the script's command-line arguments.
    cwd: working directory.
    env: {name: value} set for this command line (None as a value unsets the variable).
    timeout: seconds before the command line is killed (its return code is then -SIGALRM).
  """
  return dict(args=[str(a) for a in args], cwd=str(cwd), env=dict(env or {}),
              timeout=int(timeout))


def run_many(script, commands, parallel=1, timeout=1800):
  """Runs `commands` (from `command`) of `script` (relative to the repository), `parallel` at a
  time, in forks of one process that imported the script once.

  Returns:
    A `subprocess.CompletedProcess` per command line, in order (`args` is the argv).

  Raises:
    RuntimeError: if the shared process itself fails (e.g. the script does not import).
  """
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  env.update({"PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
  with tempfile.TemporaryDirectory() as tmp:
    request, results = os.path.join(tmp, "request.json"), os.path.join(tmp, "results.json")
    with open(request, "w") as f:
      json.dump(dict(script=script, commands=list(commands), parallel=parallel), f)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), request, results],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not os.path.exists(results):
      raise RuntimeError(f"cli_runner for {script} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-5000:]}")
    with open(results) as f:
      done = json.load(f)
  return [subprocess.CompletedProcess([script, *c["args"]], r["returncode"], r["stdout"],
                                      r["stderr"]) for c, r in zip(commands, done)]


class Launcher:
  """Runs command lines of `script` (relative to the repository; None: any of `SCRIPTS`, named
  per `start`) one at a time, each in a fork of one process that imported the script (None:
  the scripts' imports) once; `close` ends that process."""

  def __init__(self, script=None):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update({"PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2"})
    self._script = script
    self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, os.path.abspath(__file__), "--serve", script or "-"], cwd=REPO,
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        bufsize=0)  # unbuffered: select works
    if self._proc.stdout.readline() != b"ready\n":
      raise RuntimeError(f"cli_runner could not import {script or SCRIPTS} (its stderr is "
                         "above)")
    self.running = None

  def start(self, args, log_path, cwd=REPO, env=None, script=None, err_path=None):
    """Starts `script args` in `cwd` with `env` added, stdout to `log_path`, stderr there too
    or to `err_path`; `script` only for a `Launcher()` (which needs it)."""
    assert self.running is None or self.running.poll() is not None, "one at a time"
    assert (script is None) != (self._script is None), "the script: in Launcher() or start()"
    assert script is None or script in SCRIPTS, script
    cmd = dict(command(*args, cwd=cwd, env=env, timeout=0), log=str(log_path),
               err=str(err_path or log_path), script=script)
    for path in {log_path, err_path or log_path}:  # there when we return
      open(path, "w").close()  # pylint: disable=consider-using-with
    self._proc.stdin.write((json.dumps(cmd) + "\n").encode())
    self.running = Launched(self._proc.stdout, int(self._proc.stdout.readline()))
    return self.running

  def run(self, *args, script=None, cwd=REPO, env=None, timeout=300):
    """`script args` (`start`) to its end, like `subprocess.run(..., capture_output=True,
    text=True, timeout=timeout)`: a `subprocess.CompletedProcess` with its return code, stdout
    and stderr (`subprocess.TimeoutExpired` after `timeout` s, the run killed)."""
    with tempfile.TemporaryDirectory() as tmp:
      out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
      launched = self.start(args, out, cwd=cwd, env=env, script=script, err_path=err)
      try:
        code = launched.wait(timeout=timeout)
      except subprocess.TimeoutExpired:
        launched.kill()
        launched.wait()
        raise
      with open(out, errors="replace") as f_out, open(err, errors="replace") as f_err:
        return subprocess.CompletedProcess([script or self._script, *args], code, f_out.read(),
                                           f_err.read())

  def close(self):
    if self.running is not None and self.running.poll() is None:
      self.running.kill()
      self.running.wait()
    self._proc.stdin.close()
    self._proc.wait(timeout=60)


class Launched:
  """One command line started by `Launcher`: `pid`, `returncode`, `poll`, `wait`, `kill` as in
  `subprocess.Popen` (the return code is -N after signal N)."""

  def __init__(self, channel, pid):
    self._channel, self.pid, self.returncode = channel, pid, None

  def poll(self):
    return self.wait(timeout=0, raise_timeout=False)

  def wait(self, timeout=None, raise_timeout=True):
    if self.returncode is None:
      if select.select([self._channel], [], [], timeout)[0]:
        line = self._channel.readline()
        if not line:
          raise RuntimeError("cli_runner's process ended (its stderr is above)")
        self.returncode = int(line)
      elif raise_timeout:
        raise subprocess.TimeoutExpired(str(self.pid), timeout)
    return self.returncode

  def kill(self):
    if self.poll() is None:
      os.kill(self.pid, signal.SIGKILL)


# --- the shared process ----------------------------------------------------------------------
def _load_script(path):
  spec = importlib.util.spec_from_file_location("_cli_script", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)  # defines the flags; not __main__, so app.run is not called
  return module


def _child(module, path, cmd, out, err):
  """In the fork: runs one command line and exits with its status (never returns); imports
  the script at `path` first when `module` is None."""
  code = 1
  try:
    os.chdir(cmd["cwd"])
    for name, value in cmd["env"].items():
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value
    sys.stdout.flush()
    sys.stderr.flush()
    out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out_fd, 1)
    os.dup2(out_fd if err == out else os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    signal.alarm(cmd["timeout"])
    sys.argv = [path, *cmd["args"]]
    from absl import app  # pylint: disable=g-import-not-at-top
    try:
      module = module or _load_script(path)
      app.run(module.main)  # ends with sys.exit(main(argv))
      code = 0
    except SystemExit as e:
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:  # sys.exit("message"): Python prints it and exits with 1
        print(e.code, file=sys.stderr)
    except BaseException:  # pylint: disable=broad-except
      traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access


def _serve(request_path, results_path):
  with open(request_path) as f:
    request = json.load(f)
  path = os.path.join(REPO, request["script"])
  module = _load_script(path)
  commands = request["commands"]
  results = [None] * len(commands)
  with tempfile.TemporaryDirectory() as tmp:
    pending, running = list(enumerate(commands)), {}
    while pending or running:
      while pending and len(running) < request["parallel"]:
        i, cmd = pending.pop(0)
        out, err = os.path.join(tmp, f"{i}.out"), os.path.join(tmp, f"{i}.err")
        pid = os.fork()
        if pid == 0:
          _child(module, path, cmd, out, err)
        running[pid] = (i, out, err)
      pid, status = os.wait()
      i, out, err = running.pop(pid)
      with open(out, errors="replace") as f_out, open(err, errors="replace") as f_err:
        results[i] = dict(returncode=os.waitstatus_to_exitcode(status), stdout=f_out.read(),
                          stderr=f_err.read())
  with open(results_path, "w") as f:
    json.dump(results, f)


def _program(script):
  """The module that `script` (in `SCRIPTS`) takes its `main` from, e.g. lcflow_tf.cli.train."""
  with open(os.path.join(REPO, script)) as f:
    tree = ast.parse(f.read())
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names):
      return node.module
  raise ValueError(f"{script} imports no `main` (from lcflow_tf.cli.<program> import main)")


def _import_what_scripts_import():
  """Imports every module that the programs of `SCRIPTS` import, but not the programs (nor the
  scripts): their flags would clash."""
  programs = {_program(script) for script in SCRIPTS}
  for program in sorted(programs):
    with open(importlib.util.find_spec(program).origin) as f:  # imports its package only
      tree = ast.parse(f.read())
    for node in tree.body:
      if isinstance(node, ast.Import):
        for alias in node.names:
          importlib.import_module(alias.name)
      elif isinstance(node, ast.ImportFrom):
        module = importlib.import_module(node.module)
        for alias in node.names:  # `from package import module`
          name = f"{node.module}.{alias.name}"
          if name not in programs and not hasattr(module, alias.name):
            importlib.import_module(name)
  imported = sorted(programs & set(sys.modules))
  if imported:  # one program's imports import another program: the children's flags clash
    raise RuntimeError(f"importing what {SCRIPTS} import imported the programs {imported}")


def _serve_one_at_a_time(script):
  """`Launcher`'s process: per request line, forks a child, answers its pid, then its exit code.

  `script` "-": the scripts' imports now, each child's script (`cmd["script"]`) in the child.
  """
  if script == "-":
    _import_what_scripts_import()
    module = None
  else:
    module = _load_script(os.path.join(REPO, script))
  channel = os.fdopen(os.dup(1), "w")
  os.dup2(2, 1)  # whatever else prints goes to stderr
  channel.write("ready\n")
  channel.flush()
  for line in sys.stdin:
    cmd = json.loads(line)
    path = os.path.join(REPO, cmd["script"] or script)
    pid = os.fork()
    if pid == 0:
      channel.close()
      _child(module, path, cmd, cmd["log"], cmd["err"])
    channel.write(f"{pid}\n")
    channel.flush()
    _, status = os.waitpid(pid, 0)
    channel.write(f"{os.waitstatus_to_exitcode(status)}\n")
    channel.flush()


if __name__ == "__main__":
  if sys.argv[1] == "--serve":
    _serve_one_at_a_time(sys.argv[2])
  else:
    _serve(sys.argv[1], sys.argv[2])
