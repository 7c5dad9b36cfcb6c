"""Writing files and directories whole or not at all, and checking directories up front.

Everything the library writes besides checkpoints (TensorFlow's own, see
`lcflow_tf.checkpoints`) goes through here: `config.json` and `results.json`
(`write_json_atomic`), PNGs (`lcflow_tf.viz.save_png`), the feature classifier's weights
(`lcflow_tf.sample_quality`) and SavedModel exports (`replace_dir_atomically`). A file is
written to a temporary name in its destination's directory and renamed over the destination
(`os.replace`, atomic on POSIX), so a crash leaves either the old file or the new one, never a
half-written one; the temporary file is removed on failure. New files and directories get
the permissions that `open`/`mkdir` would give under the current umask (not the 0600/0700 of
`tempfile`), so a server running as another user can read an export.

`check_creatable_dir` is the check that every command runs on its output directories before
it writes anything.
"""

import contextlib
import json
import os
import shutil
import tempfile


def check_creatable_dir(path, what):
  """Checks, before anything is written, that `path` is or can become a writable directory.

  Args:
    path: the directory.
    what: how messages name it (e.g. "model_dir").

  Raises:
    ValueError: naming `what` when `path` is empty, is an existing non-directory, lies under a
      regular file, or its first existing ancestor is not writable.
  """
  if not path:
    raise ValueError(f"{what} must be a non-empty path.")
  path = os.path.abspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"{what} {path} exists and is not a directory.")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"{what} {path} cannot be created: {existing} is a file, not a directory.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"{what} {path} is not writable (no write permission on {existing}).")


def _umask():
  umask = os.umask(0)
  os.umask(umask)
  return umask


def default_file_mode():
  """Permissions of a newly created file under the current umask (mkstemp uses 0600)."""
  return 0o666 & ~_umask()


def default_dir_mode():
  """Permissions of a newly created directory under the current umask (mkdtemp uses 0700)."""
  return 0o777 & ~_umask()


@contextlib.contextmanager
def staged_file(path, suffix=""):
  """Context that yields a temporary path beside `path`; on success it becomes `path`.

  Whatever the body writes to the yielded path replaces `path` (atomically) when the body
  returns; when it raises, the temporary file is removed and `path` is left as it was.

  Args:
    path: the destination file (its directory is created if needed).
    suffix: ending of the temporary name (some writers pick the format from it).

  Yields:
    The temporary path (an existing empty file, in `path`'s directory).
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, default_file_mode())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_write(path, mode="w", suffix=""):
  """Like `open(path, mode)` for writing, but `path` appears whole or not at all.

  Yields:
    The open file (of a temporary path; flushed and synced to disk before the rename).
  """
  with staged_file(path, suffix) as tmp, open(tmp, mode) as f:
    yield f
    f.flush()
    os.fsync(f.fileno())


def write_json_atomic(path, values, sort_keys=True):
  """Writes `values` as indented JSON (and a newline) to `path`, whole or not at all."""
  with atomic_write(path, "w", suffix=".json") as f:
    json.dump(values, f, indent=2, sort_keys=sort_keys)
    f.write("\n")


def replace_dir_atomically(target, save):
  """Runs `save(staging_dir)` and renames the result to the directory `target` (replacing it).

  The staging directory is a hidden sibling of `target` (TensorFlow Serving ignores
  non-numeric folders, so one inside a model base path is never loaded), with the
  permissions of `mkdir`; `target` appears, complete, with the rename. An existing `target` is
  moved aside first and deleted after. On failure the staging directory is removed.
  """
  parent = os.path.dirname(target)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
  try:
    os.chmod(staging, default_dir_mode())  # readable by a server's own user
    save(staging)
    if os.path.exists(target):
      old = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
      os.rename(target, os.path.join(old, "model"))
      os.rename(staging, target)
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(staging, target)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
