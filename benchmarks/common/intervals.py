"""The 95% intervals every benchmark table reports: one implementation, exact quantiles.

`mean_halfwidth` (Student-t interval of a mean), `paired_summary` (the split study's paired
statistic: mean difference by seed, its t interval, on how many seeds lower) and `std_interval`
(chi-square interval of a standard deviation, normal data). The quantiles come from scipy (a
dependency of scikit-learn), for any number of degrees of freedom.
"""

import math
import statistics


def _t975(dof):
  from scipy import stats  # pylint: disable=g-import-not-at-top
  return float(stats.t.ppf(0.975, dof))


def mean_halfwidth(values):
  """Half-width of the 95% Student-t interval of the mean of `values` (nan for fewer than 2)."""
  n = len(values)
  if n < 2:
    return float("nan")
  return _t975(n - 1) * statistics.stdev(values) / math.sqrt(n)


def paired_summary(values, reference):
  """Paired by seed: mean of `values - reference`, its 95% Student-t interval, lower count.

  Returns:
    dict with `n`, `mean`, `low`, `high` (None with fewer than 2 pairs) and `lower` (how many
    differences are < 0).
  """
  diffs = [v - r for v, r in zip(values, reference)]
  mean = statistics.mean(diffs)
  if len(diffs) < 2:
    low = high = None
  else:
    half = mean_halfwidth(diffs)
    low, high = mean - half, mean + half
  return {"n": len(diffs), "mean": mean, "low": low, "high": high,
          "lower": sum(d < 0 for d in diffs)}


def std_interval(values):
  """The 95% interval of the standard deviation from `values` (chi-square, normal data), as
  text; "" for fewer than 2 values."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  n = len(values)
  if n < 2:
    return ""
  s = statistics.stdev(values)
  low = s * math.sqrt((n - 1) / stats.chi2.ppf(0.975, n - 1))
  high = s * math.sqrt((n - 1) / stats.chi2.ppf(0.025, n - 1))
  return f"{low:.3f} - {high:.3f}"
