"""lcflow_tf.frechet: closed forms, singular covariances, symmetry, bad shapes."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from lcflow_tf import frechet


def _random_rotation(rng, n):
  q, r = np.linalg.qr(rng.normal(size=(n, n)))
  return q * np.sign(np.diag(r))


def test_closed_form_for_gaussians():
  rng = np.random.default_rng(0)
  f = 12
  mu1, mu2 = rng.normal(size=f), rng.normal(size=f)
  var1, var2 = rng.uniform(0.1, 4.0, f), rng.uniform(0.1, 4.0, f)
  var1[:3] = 0.0  # singular covariances: their square roots must not turn complex or NaN
  expected = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(var1) - np.sqrt(var2))**2)
  got = frechet.frechet_distance_from_statistics(mu1, np.diag(var1), mu2, np.diag(var2))
  assert got == pytest.approx(expected, rel=1e-12)
  # The distance is invariant under a rotation of the feature space, which makes the
  # covariances non-diagonal: the matrix square roots have to do real work. Rounding in the
  # zero eigenvalues of a singular covariance becomes sqrt(rounding) in its square root,
  # hence the looser tolerance there.
  q = _random_rotation(rng, f)
  for v1, rel in ((var1, 1e-7), (var1 + 0.5, 1e-11)):
    want = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(v1) - np.sqrt(var2))**2)
    rotated = frechet.frechet_distance_from_statistics(
        q @ mu1, q @ np.diag(v1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert rotated == pytest.approx(want, rel=rel)
  # Non-commuting covariances: the textbook formula with scipy's sqrtm (real part) agrees.
  a, b = rng.normal(size=(f, f)), rng.normal(size=(f, f))
  s1, s2 = a @ a.T, b @ b.T
  textbook = (np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2)
              - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
  ours = frechet.frechet_distance_from_statistics(mu1, s1, mu2, s2)
  assert ours == pytest.approx(textbook, rel=1e-8)
  assert ours == pytest.approx(frechet.frechet_distance_from_statistics(mu2, s2, mu1, s1),
                               rel=1e-10)


def test_sampled_gaussian_features_match_the_closed_form():
  rng = np.random.default_rng(1)
  n, f = 50000, 4
  sd1, sd2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.5, 1.0, 0.5, 3.0])
  shift = np.array([1.0, 0.0, -2.0, 0.5])
  x1 = rng.normal(size=(n, f)) * sd1
  x2 = rng.normal(size=(n, f)) * sd2 + shift
  expected = np.sum(shift**2) + np.sum((sd1 - sd2)**2)  # 5.25 + 5.25 = 10.5
  got = frechet.frechet_distance_of_features(x1, x2)
  assert got == pytest.approx(expected, rel=0.02)
  assert frechet.frechet_distance_of_features(x1, x1) == pytest.approx(0.0, abs=1e-9)
  # The QR/SVD route equals the covariance route, and is symmetric to rounding.
  stats = [(x.mean(axis=0), np.cov(x, rowvar=False)) for x in (x1, x2)]
  assert got == pytest.approx(frechet.frechet_distance_from_statistics(
      *stats[0], *stats[1]), rel=1e-10)
  assert frechet.frechet_distance_of_features(x2, x1) == pytest.approx(got, rel=1e-12)


def test_singular_features_keep_full_accuracy():
  """Dead (constant) features and fewer samples than features: covariances are singular."""
  rng = np.random.default_rng(2)
  x1, x2 = rng.normal(size=(20, 40)), rng.normal(size=(30, 40)) + 0.1
  x1[:, :5] = 0.0
  x2[:, 3:8] = 1.0
  d12 = frechet.frechet_distance_of_features(x1, x2)
  assert d12 == pytest.approx(frechet.frechet_distance_of_features(x2, x1), rel=1e-12)
  assert frechet.frechet_distance_of_features(x1, x1) < 1e-12 * np.sum(x1 * x1)
  # Agreement with scipy's sqrtm of S1 S2 (real part) at its own accuracy (it warns that
  # the matrix is singular).
  s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
  diff = x1.mean(axis=0) - x2.mean(axis=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(s1 @ s2)
  textbook = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(root.real)
  assert d12 == pytest.approx(textbook, rel=1e-6)


def test_statistics_of_mismatched_shapes_are_refused():
  with pytest.raises(ValueError, match=r"sigma2 must have shape \[3, 3\] \(means \[F\], "
                     r"covariances \[F, F\]\), got \[2, 2\]"):
    frechet.frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
  with pytest.raises(ValueError, match=r"mu1 must be a vector \[F >= 1\], got shape \[3, 1\]"):
    frechet.frechet_distance_from_statistics(np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match=r"sigma1 has non-finite values"):
    frechet.frechet_distance_from_statistics(np.zeros(2), np.full((2, 2), np.nan), np.zeros(2),
                                             np.eye(2))
