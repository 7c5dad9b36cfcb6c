"""The contract every image bijector of lcflow_tf passes (our own helpers, no TFP internals).

A bijector maps latents x (forward) to images y and back (inverse), event rank 3. The checks:

* `assert_contract`: forward(inverse(y)) == y and inverse(forward(x)) == x, finite, with the
  right shapes; through the public TFP API, fldj(x) == -ildj(forward(x)), both broadcastable
  to the batch shape; the per-element map `inverse_log_det_map(y)` (shaped like x) sums to
  ildj(y), also along the composite walker `inverse_with_log_det_map`; the fused forward
  (`forward_with_log_det`, and `forward_and_log_det` of an `ImageBijector`) returns exactly
  forward(x) and fldj(x) -- in eager mode, inside `tf.function` or
  `tf.function(jit_compile=True)`;
* `assert_log_det_matches_jacobian`: on tiny float64 inputs, ildj(y) and fldj(x) equal
  log|det| of the autodiff Jacobian of the flattened inverse / forward, and the two Jacobians
  are inverse matrices of each other.

`run_float64_contract` (eager, with the Jacobian check), `run_float32_modes` (batch shapes
(), [2], [2, 3] in eager, `tf.function` and XLA-compiled execution) and `run_digits_round_trip`
(real images) apply them to a `Case`; every bijector goes through all three.
"""

import dataclasses
import functools
import math
from typing import Callable

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from lcflow_tf import bijectors as lcb

MODES = ("eager", "function", "jit")
BATCH_SHAPES = ((), (2,), (2, 3))
EVENT_NDIMS = 3

# max |error| allowed for a round trip, per dtype (the bound for float32).
ROUND_TRIP_ATOL = {tf.float32: 1e-5, tf.float64: 1e-10}
# relative/absolute tolerance between two log-dets (sums of O(100) terms in float32).
LOG_DET_TOL = {tf.float32: (1e-5, 1e-4), tf.float64: (1e-10, 1e-9)}


@dataclasses.dataclass(frozen=True)
class Case:
  """One bijector under test.

  Attributes:
    name: test id.
    make: `make(dtype) -> bijector` (a fresh, ready-to-use bijector of that dtype; tf.DType).
    image_event: (H, W, C) of the image side (what `inverse` takes).
    latent_event: (H, W, C) of the latent side (what `forward` takes).
    latent_scale: standard deviation of the random latents fed to `forward`.
  """
  name: str
  make: Callable
  image_event: tuple
  latent_event: tuple
  latent_scale: float = 1.0

  def __str__(self):
    return self.name


def randomize_network(net, seed, last_scale=0.1):
  """Seeded weights for a Keras conditioner: He-normal kernels and N(0, 0.05) biases in the
  hidden layers, N(0, last_scale) in the (normally zero-initialised) last layer."""
  rng = np.random.default_rng(seed)
  layers = [layer for layer in net.layers if layer.weights]
  for layer in layers:
    last = layer is layers[-1]
    for v in layer.weights:
      shape = tuple(v.shape)
      if len(shape) == 4:  # conv kernel [kh, kw, in, out]
        std = last_scale if last else math.sqrt(2.0 / np.prod(shape[:-1]))
      else:
        std = last_scale if last else 0.05
      v.assign(rng.normal(0.0, std, shape).astype(tf.as_dtype(v.dtype).as_numpy_dtype))
  if last_scale > 0:
    last_kernel = [v for v in layers[-1].weights if len(v.shape) == 4][0]
    assert np.max(np.abs(last_kernel.numpy())) > 0.01
  return net


def in_mode(fn, mode):
  """`fn` to run eagerly, traced by `tf.function`, or XLA-compiled."""
  if mode == "eager":
    return fn
  if mode == "function":
    return tf.function(fn)
  if mode == "jit":
    return tf.function(fn, jit_compile=True)
  raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def random_images(batch_shape, event, dtype, seed):
  """Uniform [0, 1) images, like dequantised data."""
  rng = np.random.default_rng(seed)
  return tf.constant(rng.random(tuple(batch_shape) + tuple(event)), dtype)


def random_latents(batch_shape, event, dtype, seed, scale=1.0):
  rng = np.random.default_rng(seed)
  return tf.constant(scale * rng.standard_normal(tuple(batch_shape) + tuple(event)), dtype)


@functools.lru_cache(maxsize=1)
def _digit_images():
  k = load_digits().images.astype(np.float64)
  return ((k + 0.5) / 17.0).reshape(-1, 8, 8, 1)


def digits(n, event=(8, 8, 1), dtype=tf.float32, start=0):
  """Real sklearn digits, intensities (k + 0.5) / 17 in [0, 1), shaped [n, *event].

  (8, 8, 1) is the image itself; (4, 4, C) are its 2x2 space-to-depth tiles (4 channels per
  digit), with the channels of consecutive digits concatenated until C is reached.
  """
  images = _digit_images()
  event = tuple(event)
  if event == (8, 8, 1):
    out = images[start:start + n]
  elif event[:2] == (4, 4):
    tiles = tf.nn.space_to_depth(images, 2).numpy()  # [N, 4, 4, 4]
    per_image = -(-event[2] // 4)
    chosen = tiles[start:start + n * per_image].reshape(n, per_image, 4, 4, 4)
    out = np.concatenate(list(chosen.transpose(1, 0, 2, 3, 4)), axis=-1)[..., :event[2]]
  else:
    raise ValueError(f"digits: no adapter for event shape {event}")
  assert out.shape == (n,) + event and 0.0 <= out.min() and out.max() < 1.0
  return tf.constant(out, dtype)


def max_abs_error(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def assert_finite(name, t):
  t = np.asarray(t)
  bad = int(np.sum(~np.isfinite(t)))
  assert bad == 0, f"{name}: {bad} of {t.size} values are not finite"


def evaluate(bijector, x, y):
  """Everything the contract looks at, computed in one function (so one trace and one XLA
  compilation per mode): both directions, both round trips, the public log-dets at
  (x, forward(x)), and the per-element maps at forward(x)."""
  x_of_y = bijector.inverse(y)
  y_of_x = bijector.forward(x)
  _, walked = lcb.inverse_with_log_det_map(bijector, y_of_x)
  walked_y, walked_fldj = lcb.forward_with_log_det(bijector, x)
  if isinstance(bijector, lcb.ImageBijector):
    own = bijector.inverse_log_det_map(y_of_x)
    own_y, own_fldj = bijector.forward_and_log_det(x)
  else:
    own, own_y, own_fldj = walked, walked_y, walked_fldj
  return dict(
      x_of_y=x_of_y, y_of_x=y_of_x,
      y_back=bijector.forward(x_of_y), x_back=bijector.inverse(y_of_x),
      fldj=bijector.forward_log_det_jacobian(x, event_ndims=EVENT_NDIMS),
      ildj=bijector.inverse_log_det_jacobian(y_of_x, event_ndims=EVENT_NDIMS),
      own_map=own, walked_map=walked, own_y=own_y, own_fldj=own_fldj, walked_y=walked_y,
      walked_fldj=walked_fldj)


def assert_contract(bijector, x, y, mode="eager", atol=None, tol=None):
  """Checks the contract at latents `x` and images `y` (same batch shape) in `mode`.

  * forward(inverse(y)) == y and inverse(forward(x)) == x to `atol` (max abs error);
  * dtypes and shapes on both sides; every output finite;
  * fldj(x) == -ildj(forward(x)) through the public TFP API, both broadcastable to the
    batch shape;
  * `inverse_log_det_map(forward(x))` and the walker's `inverse_with_log_det_map` are shaped
    like x and sum over the event to ildj (the per-element rule agrees with the scalar one);
  * the fused forward, `forward_and_log_det(x)` and the walker's `forward_with_log_det`,
    gives forward(x) (to 1e-6 of its size) and fldj(x) with the batch shape.

  Returns:
    the dict of `evaluate`, as numpy, with fldj/ildj broadcast to the batch shape.
  """
  atol = ROUND_TRIP_ATOL[x.dtype] if atol is None else atol
  rtol, ld_atol = LOG_DET_TOL[x.dtype] if tol is None else tol
  batch_shape = tuple(x.shape[:-EVENT_NDIMS])
  assert tuple(y.shape[:-EVENT_NDIMS]) == batch_shape
  out = in_mode(lambda a, b: evaluate(bijector, a, b), mode)(x, y)
  for name, value in out.items():
    assert value.dtype == x.dtype, f"{name} has dtype {value.dtype}, expected {x.dtype}"
    assert_finite(f"{name} ({mode})", value)
  out = {k: v.numpy() for k, v in out.items()}
  x_event, y_event = tuple(x.shape[-EVENT_NDIMS:]), tuple(y.shape[-EVENT_NDIMS:])
  for name, event in (("x_of_y", x_event), ("x_back", x_event), ("own_map", x_event),
                      ("walked_map", x_event), ("y_of_x", y_event), ("y_back", y_event),
                      ("own_y", y_event), ("walked_y", y_event), ("own_fldj", ()),
                      ("walked_fldj", ())):
    assert out[name].shape == batch_shape + event, (name, out[name].shape, batch_shape + event)
  err_y, err_x = max_abs_error(out["y_back"], y), max_abs_error(out["x_back"], x)
  assert err_y <= atol, f"forward(inverse(y)) off by {err_y:.3g} > {atol:g} ({mode})"
  assert err_x <= atol, f"inverse(forward(x)) off by {err_x:.3g} > {atol:g} ({mode})"
  for name in ("fldj", "ildj"):
    shape = out[name].shape
    assert np.broadcast_shapes(shape, batch_shape) == batch_shape, (
        f"{name} shape {shape} does not broadcast to batch shape {batch_shape}")
    out[name] = np.broadcast_to(out[name], batch_shape)
  np.testing.assert_allclose(out["fldj"], -out["ildj"], rtol=rtol, atol=ld_atol,
                             err_msg=f"fldj(x) != -ildj(forward(x)) ({mode})")
  for name in ("own_map", "walked_map"):
    np.testing.assert_allclose(out[name].sum(axis=(-3, -2, -1)), out["ildj"], rtol=rtol,
                               atol=ld_atol, err_msg=f"sum of {name} != ildj ({mode})")
  for name in ("own", "walked"):  # the fused forward is the transform and its log-det
    scale = max(1.0, float(np.max(np.abs(out["y_of_x"]), initial=0.0)))
    err = max_abs_error(out[name + "_y"], out["y_of_x"])
    assert err <= 1e-6 * scale, f"{name} forward_and_log_det's y off by {err:.3g} ({mode})"
    np.testing.assert_allclose(out[name + "_fldj"], out["fldj"], rtol=rtol, atol=ld_atol,
                               err_msg=f"{name} forward_and_log_det's fldj != fldj ({mode})")
  return out


def flat_jacobian(fn, t):
  """[N, D_out, D_in] Jacobian of `fn` on [N, H, W, C], both sides flattened per example."""
  n = t.shape[0]
  flat_in = tf.reshape(t, [n, -1])
  with tf.GradientTape() as tape:
    tape.watch(flat_in)
    out = fn(tf.reshape(flat_in, t.shape))
    flat_out = tf.reshape(out, [n, -1])
  return tape.batch_jacobian(flat_out, flat_in)


def assert_log_det_matches_jacobian(bijector, x, rtol=1e-6):
  """float64: ildj(y) and fldj(x) == log|det J| of the flattened autodiff Jacobians.

  `x` is a batch [N, H, W, C] of latents; `y = forward(x)`. Also checks that the Jacobian
  of the inverse at y is the matrix inverse of the Jacobian of the forward at x.
  """
  assert x.dtype == tf.float64 and x.shape.rank == 4
  y = bijector.forward(x)
  j_inv = flat_jacobian(bijector.inverse, y)
  j_fwd = flat_jacobian(bijector.forward, x)
  assert j_inv.shape[1] == j_inv.shape[2], "a bijector keeps the number of elements"
  sign_inv, logdet_inv = np.linalg.slogdet(j_inv.numpy())
  sign_fwd, logdet_fwd = np.linalg.slogdet(j_fwd.numpy())
  assert np.all(sign_inv != 0) and np.all(sign_fwd != 0), "singular Jacobian"
  ildj = np.broadcast_to(bijector.inverse_log_det_jacobian(y, event_ndims=EVENT_NDIMS),
                         x.shape[:1])
  fldj = np.broadcast_to(bijector.forward_log_det_jacobian(x, event_ndims=EVENT_NDIMS),
                         x.shape[:1])
  # relative error, with an absolute floor of rtol for the volume-preserving ones
  np.testing.assert_allclose(ildj, logdet_inv, rtol=rtol, atol=rtol,
                             err_msg="ildj != log|det d inverse / dy|")
  np.testing.assert_allclose(fldj, logdet_fwd, rtol=rtol, atol=rtol,
                             err_msg="fldj != log|det d forward / dx|")
  eye = np.broadcast_to(np.eye(j_inv.shape[1]), j_inv.shape)
  np.testing.assert_allclose(np.matmul(j_inv.numpy(), j_fwd.numpy()), eye, atol=1e-8,
                             err_msg="J_inverse(y) @ J_forward(x) != I")
  return ildj, logdet_inv


def run_float64_contract(case, batch=2, seed=0):
  """float64, eager: the contract and the autodiff Jacobian check."""
  bijector = case.make(tf.float64)
  x = random_latents((batch,), case.latent_event, tf.float64, seed, case.latent_scale)
  y = random_images((batch,), case.image_event, tf.float64, seed + 1)
  assert_contract(bijector, x, y)
  assert_log_det_matches_jacobian(bijector, x)
  return bijector


def run_float32_modes(case, plan=tuple(zip(MODES, BATCH_SHAPES)), seed=0):
  """float32: the contract for each (mode, batch shape) of `plan`, on one bijector; the
  traced and compiled results agree with eager execution on the same inputs."""
  bijector = case.make(tf.float32)
  for i, (mode, batch_shape) in enumerate(plan):
    x = random_latents(batch_shape, case.latent_event, tf.float32, seed + i, case.latent_scale)
    y = random_images(batch_shape, case.image_event, tf.float32, seed + 10 + i)
    out = assert_contract(bijector, x, y, mode)
    if mode != "eager":
      assert max_abs_error(out["x_of_y"], bijector.inverse(y)) <= 1e-5, mode
      y_of_x = bijector.forward(x)
      assert max_abs_error(out["y_of_x"], y_of_x) <= 1e-5, mode
      eager_ildj = bijector.inverse_log_det_jacobian(y_of_x, event_ndims=EVENT_NDIMS)
      np.testing.assert_allclose(out["ildj"], np.broadcast_to(eager_ildj, batch_shape),
                                 rtol=1e-5, atol=1e-4, err_msg=mode)
  return bijector


def run_digits_round_trip(case, n=16, dtype=tf.float32):
  """Real digits (adapted to the image event shape) as y, through the contract (eager)."""
  bijector = case.make(dtype)
  y = digits(n, case.image_event, dtype)
  x = random_latents((n,), case.latent_event, dtype, 3, case.latent_scale)
  out = assert_contract(bijector, x, y)
  # the latents of real images go back as well: inverse(forward(inverse(y))) == inverse(y),
  # to the same bound relative to their size (data-initialised ActNorms can make them large)
  x_real = out["x_of_y"]
  x_back = bijector.inverse(bijector.forward(x_real)).numpy()
  bound = ROUND_TRIP_ATOL[dtype] * max(1.0, float(np.max(np.abs(x_real))))
  assert max_abs_error(x_back, x_real) <= bound
  return bijector, x_real
