"""Argument checks shared by the whole library, with one message format.

Every check raises `ValueError` whose message names the argument, shows the bad value and
says what is allowed, e.g. `levels must be an integer >= 1, got 0.`; with `caller` the message
starts with it (`sample: n must be an integer >= 0, got -1.`). The lists of allowed names live
with their concepts (`flows.ARCHITECTURES`, `lc.SPLITS`, `data.DATASETS`, ...); these functions
only compare against them. `bool` is never accepted as a number.
"""

import math

import numpy as np


def _fail(caller, text):
  raise ValueError(f"{caller}: {text}" if caller else text)


def is_int(value, numpy_ok=False):
  """Whether `value` is an integer (a Python int; with `numpy_ok` also a NumPy integer)."""
  kinds = (int, np.integer) if numpy_ok else int
  return isinstance(value, kinds) and not isinstance(value, bool)


def check_int(name, value, minimum=None, maximum=None, caller=None, numpy_ok=False):
  """Checks that `value` is an integer in [minimum, maximum] (either bound may be None).

  Raises:
    ValueError: e.g. `batch_size must be an integer >= 1, got 0.`
  """
  low_ok = minimum is None or (is_int(value, numpy_ok) and value >= minimum)
  high_ok = maximum is None or (is_int(value, numpy_ok) and value <= maximum)
  if is_int(value, numpy_ok) and low_ok and high_ok:
    return
  if minimum is not None and maximum is not None:
    allowed = f"an integer in {minimum}..{maximum}"
  elif minimum is not None:
    allowed = f"an integer >= {minimum}"
  elif maximum is not None:
    allowed = f"an integer <= {maximum}"
  else:
    allowed = "an integer"
  _fail(caller, f"{name} must be {allowed}, got {value!r}.")


def check_number(name, value, low=-math.inf, high=math.inf, low_open=True, high_open=False,
                 caller=None):
  """Checks that `value` is a finite int or float in the interval from `low` to `high`.

  Args:
    name: the argument's name.
    value: the argument's value.
    low: the lower bound.
    high: the upper bound.
    low_open: whether the lower bound itself is excluded.
    high_open: whether the upper bound itself is excluded.
    caller: prefix of the message.

  Raises:
    ValueError: e.g. `learning_rate must be in (0.0, inf], got -1.0.` (`... must be a finite
      number in ...` for a value that is not one).
  """
  interval = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
  if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
      or not math.isfinite(float(value))):
    _fail(caller, f"{name} must be a finite number in {interval}, got {value!r}.")
  too_low = value <= low if low_open else value < low
  too_high = value >= high if high_open else value > high
  if too_low or too_high:
    _fail(caller, f"{name} must be in {interval}, got {value!r}.")


def check_choice(name, value, allowed, caller=None):
  """Checks that `value` is one of `allowed`.

  Raises:
    ValueError: e.g. `split must be one of ['static', 'random', ...], got 'best'.`
  """
  if value not in allowed:
    _fail(caller, f"{name} must be one of {list(allowed)}, got {value!r}.")


def check_bool(name, value, caller=None):
  """Checks that `value` is True or False (not 0/1, not a string)."""
  if not isinstance(value, bool):
    _fail(caller, f"{name} must be True or False, got {value!r}.")
