"""The Frechet distance between two Gaussians, and between Gaussians fitted to two feature sets.

`d = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)`, the squared 2-Wasserstein
distance between N(mu1, S1) and N(mu2, S2) (Dowson & Landau 1982); the FID of Heusel et al.
(arXiv:1706.08500) applies it to network features of real and generated images (see
`lcflow_tf.sample_quality`). Everything is computed in float64, without complex numbers
(unlike `scipy.linalg.sqrtm` of the non-symmetric S1 S2, whose imaginary parts must be
discarded):

  * `frechet_distance_of_features(f1, f2)` (what the evaluation uses) fits mean and
    covariance to two feature sets and gets the last trace from the singular values of a
    product of QR factors of the centred features, with no matrix square root; accurate to
    rounding even for singular covariances (dead ReLU features, fewer samples than features),
    and symmetric in its arguments to rounding.
  * `frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2)` starts from means and
    covariances: the middle matrix is symmetric positive semi-definite, so both square roots
    come from `eigh`, eigenvalues below 0 (rounding) are set to 0; a zero eigenvalue's
    rounding error e becomes sqrt(e) in a square root, so singular covariances give about
    1e-8 relative accuracy there.

Both return a result below 0 (rounding when the two sets agree) as 0.
"""

import math

import numpy as np


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2):
  """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (see the module docstring).

  Args:
    mu1: the first mean [F].
    sigma1: the first covariance [F, F] (symmetric positive semi-definite).
    mu2: the second mean [F].
    sigma2: the second covariance [F, F] (symmetric positive semi-definite).

  Returns:
    float >= 0.

  Raises:
    ValueError: mismatched shapes or non-finite values.
  """
  mu1, mu2 = (np.asarray(m, np.float64) for m in (mu1, mu2))
  sigma1, sigma2 = (np.asarray(s, np.float64) for s in (sigma1, sigma2))
  if mu1.ndim != 1 or mu1.shape[0] < 1:
    raise ValueError(f"frechet_distance: mu1 must be a vector [F >= 1], got shape "
                     f"{list(mu1.shape)}.")
  f = mu1.shape[0]
  for name, value, shape in (("mu1", mu1, (f,)), ("mu2", mu2, (f,)), ("sigma1", sigma1, (f, f)),
                             ("sigma2", sigma2, (f, f))):
    if value.shape != shape:
      raise ValueError(f"frechet_distance: {name} must have shape {list(shape)} (means [F], "
                       f"covariances [F, F]), got {list(value.shape)}.")
    if not np.all(np.isfinite(value)):
      raise ValueError(f"frechet_distance: {name} has non-finite values.")
  root1 = _psd_sqrt(sigma1)
  middle = root1 @ sigma2 @ root1
  eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2.0)
  trace_sqrt = np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None)))
  diff = mu1 - mu2
  distance = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
  return max(float(distance), 0.0)


def frechet_distance_of_features(features1, features2):
  """Frechet distance between the Gaussians fitted (mean, covariance) to two feature sets.

  Computed from the centred features A [N, F] and B [M, F] themselves, without a matrix
  square root: with the QR factors A = Qa Ra and B = Qb Rb, the covariances are
  Ra^T Ra / (N - 1) and Rb^T Rb / (M - 1), and tr((S1^1/2 S2 S1^1/2)^1/2) is the sum of the
  singular values of Ra Rb^T divided by sqrt((N - 1)(M - 1)). Singular values carry an
  absolute error of about machine epsilon times the largest, so singular covariances (dead
  features, N < F) cost no accuracy, and swapping the arguments gives the same value to
  rounding (the singular values of a matrix and of its transpose).

  Args:
    features1: the first feature set, a real array [N >= 2, F].
    features2: the second feature set, a real array [M >= 2, F].

  Returns:
    float >= 0.

  Raises:
    ValueError: fewer than 2 rows, different F, or non-finite features.
  """
  centred, means = [], []
  for name, features in (("features1", features1), ("features2", features2)):
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] < 1:
      raise ValueError(f"frechet_distance: {name} must be [N >= 2, F >= 1] (a covariance needs "
                       f"2 samples), got shape {list(features.shape)}.")
    if not np.all(np.isfinite(features)):
      raise ValueError(f"frechet_distance: {name} has non-finite values.")
    means.append(features.mean(axis=0))
    centred.append(features - means[-1])
  if means[0].shape != means[1].shape:
    raise ValueError(f"frechet_distance: features1 and features2 must have the same width, got "
                     f"{means[0].shape[0]} and {means[1].shape[0]}.")
  (a, b), (n, m) = centred, (len(centred[0]), len(centred[1]))
  ra, rb = np.linalg.qr(a, mode="r"), np.linalg.qr(b, mode="r")
  trace_sqrt = np.sum(np.linalg.svd(ra @ rb.T, compute_uv=False)) / math.sqrt((n - 1) * (m - 1))
  diff = means[0] - means[1]
  distance = (diff @ diff + np.sum(a * a) / (n - 1) + np.sum(b * b) / (m - 1)
              - 2.0 * trace_sqrt)
  return max(float(distance), 0.0)


def _psd_sqrt(matrix):
  """Symmetric square root of a symmetric PSD matrix (negative eigenvalues -> 0)."""
  eigenvalues, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
  return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T
