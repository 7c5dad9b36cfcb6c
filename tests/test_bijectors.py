"""Every image bijector against the shared contract, in compositions, and on bad input."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from lcflow_tf import bijectors as lcb
from lcflow_tf import networks
from tests import bijector_contract as contract

tfb = tfp.bijectors
tfd = tfp.distributions

HIDDEN = 8
IMAGE = (4, 4, 4)


# --- building blocks with random, non-trivial parameters -----------------------------------
def conditioner(n_in, n_out, dtype, seed, last_scale=0.1):
  net = networks.glow_network(n_in, n_out, HIDDEN, dtype=dtype.name)
  return contract.randomize_network(net, seed, last_scale)


def coupling(event, dtype, mask="channel", parity=0, kind="affine", scale_fn="sigmoid", seed=0,
             **bounds):
  n_in, n_out = lcb.conditioner_channels(event[-1], mask, kind)
  return lcb.AffineCoupling(conditioner(n_in, n_out, dtype, seed), event, mask=mask,
                            parity=parity, kind=kind, scale_fn=scale_fn, dtype=dtype, **bounds)


def actnorm_random(channels, dtype, seed=0):
  rng = np.random.default_rng(seed)
  a = lcb.ActNorm(channels, dtype=dtype)
  a.loc.assign(rng.normal(0.0, 0.5, channels))
  a.log_scale.assign(rng.normal(0.0, 0.5, channels))
  a.initialized.assign(True)
  return a


def actnorm_data_init(channels, dtype):
  a = lcb.ActNorm(channels, dtype=dtype)
  a.initialize(contract.digits(64, (4, 4, channels), dtype))
  assert bool(a.initialized.numpy())
  assert np.max(np.abs(a.log_scale.numpy())) > 0.1 and np.max(np.abs(a.loc.numpy())) > 0.1
  return a


def conv1x1(channels, dtype, parametrization, seed=0):
  rng = np.random.default_rng(seed)
  c = lcb.InvertibleConv1x1(channels, parametrization=parametrization, seed=seed, dtype=dtype)
  if parametrization == "lu":
    c.log_s.assign_add(rng.normal(0.0, 0.3, channels))
    c.lower.assign_add(rng.normal(0.0, 0.3, (channels, channels)))
    c.upper.assign_add(rng.normal(0.0, 0.3, (channels, channels)))
  else:
    c.weight.assign_add(rng.normal(0.0, 0.3, (channels, channels)))
  assert abs(float(c.log_abs_det())) > 0.05  # not volume preserving any more
  return c


def random_permutation(event, seed=0):
  rng = np.random.default_rng(seed)
  return rng.permuted(np.broadcast_to(np.arange(event[-1]), event).copy(), axis=-1)


def channel_permutation(event, dtype, seed=0):
  return lcb.ChannelPermutation(event, indices=random_permutation(event, seed), dtype=dtype)


def factor_out(dtype, prior, inner_kind, permute, event=IMAGE, seed=0, max_log_sigma=None):
  half = event[:2] + (event[2] // 2,)
  if inner_kind == "coupling":
    inner = coupling(half, dtype, mask="checkerboard", seed=seed + 1)
  else:
    inner = tfb.Chain([actnorm_random(half[-1], dtype, seed + 2),
                       conv1x1(half[-1], dtype, "lu", seed + 3),
                       coupling(half, dtype, mask="channel", parity=1, seed=seed + 4)])
  net = None
  if prior == "conditional":
    # small weights: the prior network sees the kept half at image scale
    net = networks.prior_network(half[-1], event[-1], dtype=dtype.name)
    contract.randomize_network(net, seed + 5, last_scale=0.03)
  permutation = channel_permutation(event, dtype, seed + 6) if permute else None
  return lcb.FactorOut(inner, event, prior=prior, prior_network=net, permutation=permutation,
                       max_log_sigma=max_log_sigma, dtype=dtype)


def open_junction(dtype, seed=0):
  """The nosplit pilot's junction: nothing leaves, every channel goes through `inner`."""
  inner = tfb.Chain([actnorm_random(IMAGE[-1], dtype, seed + 2),
                     conv1x1(IMAGE[-1], dtype, "lu", seed + 3),
                     coupling(IMAGE, dtype, mask="channel", parity=1, seed=seed + 4)])
  return lcb.OpenJunction(inner, IMAGE, dtype=dtype)


def _coupling_cases():
  cases = []
  for mask, event in (("channel", IMAGE), ("checkerboard", (4, 4, 2))):
    for kind, scale_fn in (("affine", "sigmoid"), ("affine", "tanh"), ("additive", "sigmoid")):
      for parity in (0, 1):
        cases.append(contract.Case(
            f"coupling-{mask}-{kind}-{scale_fn}-p{parity}",
            lambda dtype, m=mask, e=event, k=kind, s=scale_fn, p=parity:
            coupling(e, dtype, m, p, k, s, seed=p),
            event, event))
  # soft bounds small enough to be active on the random conditioners' outputs
  for mask, event in (("channel", IMAGE), ("checkerboard", (4, 4, 2))):
    cases.append(contract.Case(
        f"coupling-{mask}-affine-sigmoid-bounded",
        lambda dtype, m=mask, e=event: coupling(e, dtype, m, 0, "affine", "sigmoid", seed=3,
                                                max_log_scale=0.05, max_shift=0.05),
        event, event))
  # unequal halves: C = 3 splits 1 (conditioning) / 2 (transformed)
  for parity in (0, 1):
    cases.append(contract.Case(
        f"coupling-channel-odd-p{parity}",
        lambda dtype, p=parity: coupling((4, 4, 3), dtype, "channel", p, seed=7), (4, 4, 3),
        (4, 4, 3)))
  return cases


CASES = [
    contract.Case("squeeze", lambda dtype: lcb.Squeeze(), (8, 8, 1), (4, 4, 4)),
    contract.Case("actnorm-data-init", lambda dtype: actnorm_data_init(4, dtype), IMAGE, IMAGE),
    contract.Case("actnorm-random", lambda dtype: actnorm_random(4, dtype), IMAGE, IMAGE),
    contract.Case("conv1x1-lu", lambda dtype: conv1x1(4, dtype, "lu"), IMAGE, IMAGE),
    contract.Case("conv1x1-matrix", lambda dtype: conv1x1(4, dtype, "matrix"), IMAGE, IMAGE),
    *_coupling_cases(),
    contract.Case("permutation", lambda dtype: channel_permutation(IMAGE, dtype), IMAGE, IMAGE),
    contract.Case("factor-out-standard-coupling",
                  lambda dtype: factor_out(dtype, "standard", "coupling", False), IMAGE, IMAGE),
    contract.Case("factor-out-standard-chain-perm",
                  lambda dtype: factor_out(dtype, "standard", "chain", True), IMAGE, IMAGE),
    contract.Case("factor-out-conditional-coupling-perm",
                  lambda dtype: factor_out(dtype, "conditional", "coupling", True), IMAGE, IMAGE),
    contract.Case("factor-out-conditional-chain",
                  lambda dtype: factor_out(dtype, "conditional", "chain", False), IMAGE, IMAGE),
    contract.Case("factor-out-conditional-bounded",
                  lambda dtype: factor_out(dtype, "conditional", "coupling", True,
                                           max_log_sigma=0.02), IMAGE, IMAGE),
    contract.Case("open-junction-chain", open_junction, IMAGE, IMAGE),
]
IDS = [c.name for c in CASES]


# --- the contract ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_contract_float64_round_trip_log_dets_and_jacobian(case):
  contract.run_float64_contract(case)


# Compiling every coupling variant is slow; these cover each mask with each kind, both scale
# functions and both parities in tf.function and XLA. The other variants run every batch shape
# eagerly (their modes are the same code paths).
COMPILED_COUPLINGS = ("coupling-channel-affine-sigmoid-p0", "coupling-channel-additive-sigmoid-p1",
                      "coupling-checkerboard-affine-tanh-p0",
                      "coupling-checkerboard-additive-sigmoid-p1",
                      "coupling-checkerboard-affine-sigmoid-p1", "coupling-channel-odd-p1",
                      "coupling-channel-affine-sigmoid-bounded")
EAGER_PLAN = tuple(("eager", shape) for shape in contract.BATCH_SHAPES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_contract_float32_batch_shapes_and_modes(case):
  if case.name.startswith("coupling") and case.name not in COMPILED_COUPLINGS:
    contract.run_float32_modes(case, plan=EAGER_PLAN)
  else:
    contract.run_float32_modes(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_contract_float32_digits(case):
  contract.run_digits_round_trip(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bijector_is_not_the_identity(case):
  """Guards the contract against trivially passing: each case really moves its input."""
  b = case.make(tf.float64)
  y = contract.random_images((2,), case.image_event, tf.float64, 5)
  x = b.inverse(y)
  if case.image_event == case.latent_event:
    assert contract.max_abs_error(x, y) > 1e-3
  if case.name.startswith(("actnorm", "conv1x1", "coupling-channel-affine",
                           "coupling-checkerboard-affine", "coupling-channel-odd", "factor-out-c")):
    ildj = b.inverse_log_det_jacobian(y, event_ndims=3).numpy()
    assert np.all(np.abs(ildj) > 1e-2), ildj


# --- bijector-specific behaviour ----------------------------------------------------------
def test_squeeze_matches_explicit_rearrangement():
  y = contract.random_images((2, 3), (4, 6, 2), tf.float64, 0).numpy()
  expected = y.reshape(2, 3, 2, 2, 3, 2, 2).transpose(0, 1, 2, 4, 3, 5, 6).reshape(2, 3, 2, 3, 8)
  got = lcb.Squeeze().inverse(y).numpy()
  np.testing.assert_array_equal(got, expected)
  assert lcb.Squeeze().inverse_event_shape([4, 6, 2]) == [2, 3, 8]
  assert lcb.Squeeze().forward_event_shape([2, 3, 8]) == [4, 6, 2]


def test_permutation_matches_numpy_gather_and_inverse_indices():
  event = (2, 3, 5)
  order = random_permutation(event, 3)
  p = lcb.ChannelPermutation(event, indices=order, dtype=tf.float64)
  y = contract.random_images((4,), event, tf.float64, 0).numpy()
  np.testing.assert_array_equal(p.inverse(y), np.take_along_axis(y, order[None], axis=-1))
  np.testing.assert_array_equal(np.take_along_axis(order, p.inverse_indices.numpy(), -1),
                                np.broadcast_to(np.arange(5), event))
  identity = lcb.ChannelPermutation(event, dtype=tf.float64)
  np.testing.assert_array_equal(identity.inverse(y), y)


def test_conv1x1_matrices_and_log_det():
  for parametrization in ("lu", "matrix"):
    c = conv1x1(5, tf.float64, parametrization, seed=2)
    w = c.matrix().numpy()
    np.testing.assert_allclose(c.inverse_matrix().numpy() @ w, np.eye(5), atol=1e-12)
    np.testing.assert_allclose(float(c.log_abs_det()), np.linalg.slogdet(w)[1], rtol=1e-12)
    y = contract.random_images((2,), (3, 3, 5), tf.float64, 0)
    np.testing.assert_allclose(c.inverse(y), np.einsum("nhwc,dc->nhwd", y.numpy(), w),
                               rtol=1e-12)
    # per-element rule: log|det W| / C on every element
    np.testing.assert_allclose(c.inverse_log_det_map(y),
                               np.full(y.shape, np.linalg.slogdet(w)[1] / 5), rtol=1e-12)


def test_conv1x1_matrix_log_det_gradient_eager_and_xla():
  """d log|det W| / dW = W^-T, also when compiled (training differentiates through it)."""
  c = conv1x1(4, tf.float64, "matrix", seed=1)

  def value_and_grad():
    with tf.GradientTape() as tape:
      value = c.log_abs_det()
    return value, tape.gradient(value, c.weight)

  w = c.weight.numpy()
  for fn in (value_and_grad, tf.function(value_and_grad, jit_compile=True)):
    value, grad = fn()
    np.testing.assert_allclose(value, np.linalg.slogdet(w)[1], rtol=1e-12)
    np.testing.assert_allclose(grad, np.linalg.inv(w).T, rtol=1e-10, atol=1e-12)


def test_fresh_conv1x1_is_a_rotation():
  c = lcb.InvertibleConv1x1(4, seed=3, dtype=tf.float64)
  w = c.matrix().numpy()
  np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)


def _diag_log_abs_jacobian(bijector, y):
  j = contract.flat_jacobian(bijector.inverse, y).numpy()
  return j, np.log(np.abs(np.diagonal(j, axis1=1, axis2=2))).reshape(y.shape)


@pytest.mark.parametrize("mask,parity,event", [("channel", 0, IMAGE), ("channel", 1, (4, 4, 3)),
                                               ("checkerboard", 0, (4, 4, 2)),
                                               ("checkerboard", 1, (4, 4, 2))])
@pytest.mark.parametrize("scale_fn", ["sigmoid", "tanh"])
def test_coupling_per_element_map_is_the_jacobian_diagonal(mask, parity, event, scale_fn):
  """For a coupling the inverse Jacobian is triangular (conditioning part first), so the
  per-element map must be exactly log|diagonal|; conditioning elements pass unchanged."""
  b = coupling(event, tf.float64, mask, parity, "affine", scale_fn, seed=11)
  y = contract.random_images((2,), event, tf.float64, 1)
  x, a = b.inverse_and_log_det_map(y)
  j, diag = _diag_log_abs_jacobian(b, y)
  np.testing.assert_allclose(a, diag, rtol=1e-10, atol=1e-12)
  if mask == "channel":
    cond = np.zeros(event, bool)
    if parity == 0:
      cond[..., :event[-1] // 2] = True
    else:
      cond[..., event[-1] - event[-1] // 2:] = True
  else:
    h, w = np.meshgrid(range(event[0]), range(event[1]), indexing="ij")
    cond = np.broadcast_to(((h + w + parity) % 2 == 0)[..., None], event)
  np.testing.assert_array_equal(np.asarray(x)[:, cond], y.numpy()[:, cond])
  np.testing.assert_array_equal(np.asarray(a)[:, cond], 0.0)
  assert np.all(np.abs(np.asarray(a)[:, ~cond]) > 0)
  # transformed elements depend on the conditioning ones only (no other off-diagonal terms)
  flat_cond = cond.reshape(-1)
  block = j[:, ~flat_cond][:, :, ~flat_cond]
  off_diag = block - np.einsum("nii->ni", block)[:, :, None] * np.eye(block.shape[1])
  np.testing.assert_array_equal(off_diag, 0.0)
  assert np.max(np.abs(j[:, ~flat_cond][:, :, flat_cond])) > 1e-3  # conditioner matters


def test_actnorm_map_is_log_scale_per_channel():
  a = actnorm_random(4, tf.float64)
  y = contract.random_images((2,), IMAGE, tf.float64, 0)
  x, m = a.inverse_and_log_det_map(y)
  np.testing.assert_allclose(m, np.broadcast_to(a.log_scale.numpy(), y.shape), rtol=1e-12)
  np.testing.assert_allclose(x, (y.numpy() - a.loc.numpy()) * np.exp(a.log_scale.numpy()),
                             rtol=1e-12)


class _CountingConditioner:
  def __init__(self, net):
    self.net, self.calls = net, 0

  def __call__(self, t):
    self.calls += 1
    return self.net(t)


@pytest.mark.parametrize("mask,event", [("channel", IMAGE), ("checkerboard", (4, 4, 2))])
def test_coupling_runs_its_conditioner_once_per_call(mask, event):
  n_in, n_out = lcb.conditioner_channels(event[-1], mask, "affine")
  counter = _CountingConditioner(conditioner(n_in, n_out, tf.float32, 0))
  b = lcb.AffineCoupling(counter, event, mask=mask)
  y = contract.random_images((2,), event, tf.float32, 0)
  for call in (lambda: b.inverse_and_log_det_map(y), lambda: b.inverse(y),
               lambda: b.inverse_and_log_det(y), lambda: b.forward(y),
               lambda: b.inverse_log_det_jacobian(y, event_ndims=3),
               lambda: b.forward_log_det_jacobian(y, event_ndims=3),
               lambda: b.forward_and_log_det(y), lambda: lcb.forward_with_log_det(b, y),
               lambda: lcb.forward_with_log_det(tfb.Chain([lcb.ActNorm(event[-1]), b]), y)):
    counter.calls = 0
    call()
    assert counter.calls == 1


def test_factor_out_forward_with_log_det_runs_each_network_once():
  """The junction's forward log-det comes with its transform: the inner level's coupling and
  the prior network run once per call, and the values are forward(x) and fldj(x)."""
  dtype = tf.float64
  inner_coupling = coupling((4, 4, 2), dtype, mask="channel", parity=1, seed=4)
  inner_net = _CountingConditioner(inner_coupling.conditioner)
  inner_coupling._conditioner = inner_net  # pylint: disable=protected-access
  inner = tfb.Chain([actnorm_random(2, dtype, 2), conv1x1(2, dtype, "lu", 3), inner_coupling])
  prior = _CountingConditioner(contract.randomize_network(
      networks.prior_network(2, 4, dtype="float64"), 5, last_scale=0.03))
  fo = lcb.FactorOut(inner, IMAGE, prior="conditional", prior_network=prior,
                     permutation=channel_permutation(IMAGE, dtype, 6), dtype=dtype)
  x = contract.random_latents((3,), IMAGE, dtype, 0)
  for call in (lambda: fo.forward_and_log_det(x), lambda: fo.forward(x),
               lambda: fo.forward_log_det_jacobian(x, event_ndims=3),
               lambda: lcb.forward_with_log_det(tfb.Chain([actnorm_random(4, dtype), fo]), x),
               lambda: fo.inverse_and_log_det_map(x), lambda: fo.inverse_and_log_det(x)):
    inner_net.calls = prior.calls = 0
    call()
    assert (inner_net.calls, prior.calls) == (1, 1)
  y, fldj = fo.forward_and_log_det(x)
  np.testing.assert_array_equal(y, fo.forward(x))
  np.testing.assert_allclose(fldj, fo.forward_log_det_jacobian(x, event_ndims=3), rtol=1e-12)
  np.testing.assert_allclose(fldj, -fo.inverse_log_det_jacobian(y, event_ndims=3), rtol=1e-10)
  assert np.all(np.abs(fldj.numpy()) > 1e-2)


def test_forward_walker_calls_other_bijectors_through_tfp():
  x = contract.random_latents((2,), (4, 4, 4), tf.float64, 0)
  y, fldj = lcb.forward_with_log_det(
      tfb.Chain([lcb.Squeeze(), tfb.Scale(tf.constant(2.0, tf.float64))]), x)
  np.testing.assert_array_equal(y, tf.nn.depth_to_space(2.0 * x, 2))
  np.testing.assert_allclose(fldj, [64 * np.log(2.0)] * 2, rtol=1e-12)


def test_actnorm_initialises_on_first_inverse_only():
  for wrap in (lambda f: f, tf.function):
    a = lcb.ActNorm(4, dtype=tf.float64)
    first = contract.digits(32, IMAGE, tf.float64)
    x = wrap(lambda t, a=a: a.inverse(t))(first).numpy()
    assert bool(a.initialized.numpy())
    np.testing.assert_allclose(x.mean(axis=(0, 1, 2)), 0.0, atol=1e-10)
    np.testing.assert_allclose(x.std(axis=(0, 1, 2)), 1.0, rtol=1e-5)
    loc = a.loc.numpy().copy()
    a.inverse(contract.digits(32, IMAGE, tf.float64, start=500))
    np.testing.assert_array_equal(a.loc.numpy(), loc)


def test_factor_out_standard_prior_passes_factored_half_through():
  event = IMAGE
  order = random_permutation(event, 4)
  inner = coupling((4, 4, 2), tf.float64, "checkerboard", seed=5)
  fo = lcb.FactorOut(inner, event, prior="standard",
                     permutation=lcb.ChannelPermutation(event, order, dtype=tf.float64),
                     dtype=tf.float64)
  y = contract.random_images((2,), event, tf.float64, 0).numpy()
  permuted = np.take_along_axis(y, order[None], axis=-1)
  x, a = fo.inverse_and_log_det_map(y)
  np.testing.assert_array_equal(np.asarray(x)[..., 2:], permuted[..., 2:])
  np.testing.assert_array_equal(np.asarray(a)[..., 2:], 0.0)
  np.testing.assert_allclose(np.asarray(x)[..., :2], inner.inverse(permuted[..., :2]),
                             rtol=1e-12)
  np.testing.assert_allclose(np.asarray(a)[..., :2],
                             inner.inverse_log_det_map(permuted[..., :2]), rtol=1e-12)


def test_factor_out_conditional_prior_affine_on_factored_half():
  net = contract.randomize_network(networks.prior_network(2, 4, dtype="float64"), 3, 0.1)
  fo = lcb.FactorOut(coupling((4, 4, 2), tf.float64, "checkerboard", seed=1), IMAGE,
                     prior="conditional", prior_network=net, dtype=tf.float64)
  y = contract.random_images((2,), IMAGE, tf.float64, 0).numpy()
  x, a = fo.inverse_and_log_det_map(y)
  out = net(y[..., :2]).numpy()
  mean, log_sigma = out[..., :2], out[..., 2:]
  np.testing.assert_allclose(np.asarray(x)[..., 2:], (y[..., 2:] - mean) * np.exp(-log_sigma),
                             rtol=1e-12)
  np.testing.assert_allclose(np.asarray(a)[..., 2:], -log_sigma, rtol=1e-12)


# --- composition -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_composition_chain_invert_transformed_distribution(case):
  b = case.make(tf.float64)
  x = contract.random_latents((2,), case.latent_event, tf.float64, 0, case.latent_scale)
  y = contract.random_images((2,), case.image_event, tf.float64, 1)

  chain = tfb.Chain([b])
  out = contract.assert_contract(chain, x, y)
  np.testing.assert_allclose(out["fldj"], np.broadcast_to(
      b.forward_log_det_jacobian(x, event_ndims=3), (2,)), rtol=1e-12, atol=1e-12)
  np.testing.assert_array_equal(chain.inverse(y), b.inverse(y))

  inverted = tfb.Invert(b)  # latent and image sides swap
  contract.assert_contract(inverted, y, x)
  np.testing.assert_array_equal(inverted.forward(y), b.inverse(y))
  np.testing.assert_allclose(inverted.forward_log_det_jacobian(y, event_ndims=3),
                             b.inverse_log_det_jacobian(y, event_ndims=3), rtol=1e-12)
  contract.assert_log_det_matches_jacobian(inverted, y)

  base = tfd.Sample(tfd.Normal(tf.constant(0.0, tf.float64), tf.constant(1.0, tf.float64)),
                    sample_shape=case.latent_event)
  dist = tfd.TransformedDistribution(base, b)
  assert tuple(dist.event_shape) == case.image_event
  latent = b.inverse(y)
  expected = (base.log_prob(latent)
              + np.broadcast_to(b.inverse_log_det_jacobian(y, event_ndims=3), (2,)))
  np.testing.assert_allclose(dist.log_prob(y), expected, rtol=1e-12)
  # and the explicit Normal density, independently of TFP's Sample
  by_hand = np.sum(-0.5 * latent.numpy() ** 2 - 0.5 * np.log(2 * np.pi), axis=(1, 2, 3))
  np.testing.assert_allclose(base.log_prob(latent), by_hand, rtol=1e-12)
  assert tuple(dist.sample(3, seed=1).shape) == (3,) + case.image_event


def test_chain_of_several_bijectors_and_walker():
  """A hand-built chain mixing every kind, including Invert(Squeeze), through the contract."""
  def make(dtype):
    return tfb.Chain([
        lcb.Squeeze(), actnorm_random(4, dtype), conv1x1(4, dtype, "lu"),
        coupling(IMAGE, dtype, seed=3), factor_out(dtype, "conditional", "chain", True),
        tfb.Invert(lcb.Squeeze()),
    ])
  case = contract.Case("chain", make, (8, 8, 1), (8, 8, 1))
  contract.run_float64_contract(case)
  contract.run_float32_modes(case, plan=(("eager", (2, 3)), ("function", ())))
  contract.run_digits_round_trip(case)


def test_walker_moves_maps_like_the_data():
  """A sum cannot see a map carried to the wrong elements; check the walked maps element-wise
  through a permutation, an un-squeeze, a squeeze and a factor-out's permutation."""
  dtype = tf.float64
  an = actnorm_random(4, dtype)  # a different log-scale on every channel
  order = random_permutation(IMAGE, 2)
  perm = lcb.ChannelPermutation(IMAGE, order, dtype=dtype)
  y = contract.random_images((2,), IMAGE, dtype, 0)
  _, a = lcb.inverse_with_log_det_map(tfb.Chain([an, perm, tfb.Invert(lcb.Squeeze())]), y)
  moved = np.take_along_axis(np.broadcast_to(an.log_scale.numpy(), (2,) + IMAGE), order[None],
                             axis=-1)
  np.testing.assert_array_equal(a, tf.nn.depth_to_space(moved, 2))

  cb = coupling((8, 8, 1), dtype, "checkerboard", seed=4)
  y8 = contract.random_images((2,), (8, 8, 1), dtype, 1)
  _, a = lcb.inverse_with_log_det_map(tfb.Chain([cb, lcb.Squeeze()]), y8)
  np.testing.assert_array_equal(a, tf.nn.space_to_depth(cb.inverse_log_det_map(y8), 2))

  inner = actnorm_random(2, dtype, seed=5)
  fo = lcb.FactorOut(inner, IMAGE, prior="standard", permutation=perm, dtype=dtype)
  _, a = lcb.inverse_with_log_det_map(tfb.Chain([an, fo]), y)
  expected = moved.copy()
  expected[..., :2] += inner.log_scale.numpy()
  np.testing.assert_allclose(a, expected, rtol=1e-12)


def test_walker_rejects_unknown_bijectors():
  with pytest.raises(TypeError, match="no per-element log-det rule for Exp"):
    lcb.inverse_with_log_det_map(tfb.Exp(), tf.ones([1, 2, 2, 1]))


# --- bad input -------------------------------------------------------------------------------
def test_factor_out_odd_channels():
  with pytest.raises(ValueError, match=r"odd channel count.*\[4, 4, 3\] has C=3"):
    lcb.FactorOut(tfb.Identity(), (4, 4, 3), prior="standard")


def test_factor_out_bad_prior_and_missing_network():
  with pytest.raises(ValueError,
                     match=r"prior must be one of \('standard', 'conditional'\), got 'learned'"):
    lcb.FactorOut(tfb.Identity(), IMAGE, prior="learned")
  with pytest.raises(ValueError, match="needs a callable prior_network"):
    lcb.FactorOut(tfb.Identity(), IMAGE, prior="conditional")
  with pytest.raises(ValueError, match="permutation has event shape"):
    lcb.FactorOut(tfb.Identity(), IMAGE, prior="standard",
                  permutation=lcb.ChannelPermutation((2, 2, 4)))


BAD_INPUT_CASES = {  # name: (factory, image event shape)
    "squeeze": (lcb.Squeeze, (8, 8, 1)),
    "actnorm": (lambda: actnorm_random(4, tf.float32), IMAGE),
    "conv1x1": (lambda: conv1x1(4, tf.float32, "lu"), IMAGE),
    "coupling": (lambda: coupling(IMAGE, tf.float32), IMAGE),
    "permutation": (lambda: channel_permutation(IMAGE, tf.float32), IMAGE),
    "factor_out": (lambda: factor_out(tf.float32, "conditional", "coupling", True), IMAGE),
}


@pytest.mark.parametrize("name", BAD_INPUT_CASES)
@pytest.mark.parametrize("method", ["forward", "inverse"])
def test_wrong_rank_input(name, method):
  b = BAD_INPUT_CASES[name][0]()
  for bad in (tf.zeros([4, 4]), tf.zeros([16])):
    with pytest.raises(ValueError, match=r"rank >= 3.*got shape"):
      getattr(b, method)(bad)


def test_wrong_event_shape_names_expected_and_given():
  b = coupling(IMAGE, tf.float32)
  with pytest.raises(ValueError,
                     match=r"expected event shape \[H, W, C\] = \[4, 4, 4\], got \[4, 2, 4\]"):
    b.inverse(tf.zeros([1, 4, 2, 4]))
  with pytest.raises(ValueError, match="expected 4 channels, got 3"):
    actnorm_random(4, tf.float32).inverse(tf.zeros([1, 4, 4, 3]))
  with pytest.raises(ValueError, match=r"even H and W, got event shape \[3, 4, 1\]"):
    lcb.Squeeze().inverse(tf.zeros([1, 3, 4, 1]))
  with pytest.raises(ValueError, match=r"C divisible by 4, got event shape \[2, 2, 6\]"):
    lcb.Squeeze().forward(tf.zeros([1, 2, 2, 6]))


def test_permutation_set_indices_rejects_non_permutations():
  p = lcb.ChannelPermutation((2, 2, 3))
  bad = np.broadcast_to(np.arange(3), (2, 2, 3)).copy()
  bad[1, 0] = [0, 0, 2]
  with pytest.raises(ValueError, match=r"must be a permutation of 0\.\.2 at every location"):
    p.set_indices(bad)
  with pytest.raises(ValueError, match=r"indices must have shape \[2, 2, 3\], got \[2, 3\]"):
    p.set_indices(np.zeros((2, 3), int))
  np.testing.assert_array_equal(p.indices.numpy(), np.broadcast_to(np.arange(3), (2, 2, 3)))


def test_coupling_rejects_bad_arguments():
  net = conditioner(1, 2, tf.float32, 0)
  with pytest.raises(ValueError, match=r"channel mask needs at least 2 channels.*\[4, 4, 1\]"):
    lcb.AffineCoupling(net, (4, 4, 1), mask="channel")
  with pytest.raises(ValueError,
                     match=r"mask must be one of \('channel', 'checkerboard'\), got 'stripes'"):
    lcb.AffineCoupling(net, IMAGE, mask="stripes")
  with pytest.raises(ValueError,
                     match=r"kind must be one of \('affine', 'additive'\), got 'spline'"):
    lcb.AffineCoupling(net, IMAGE, kind="spline")
  with pytest.raises(ValueError, match=r"scale_fn must be one of \('sigmoid', 'tanh'\), got 'exp'"):
    lcb.AffineCoupling(net, IMAGE, scale_fn="exp")
  with pytest.raises(ValueError, match=r"parity must be one of \(0, 1\), got 2"):
    lcb.AffineCoupling(net, IMAGE, parity=2)
  with pytest.raises(TypeError, match="conditioner must be callable"):
    lcb.AffineCoupling("net", IMAGE)


def test_coupling_and_prior_bounds_hold_for_extreme_conditioner_outputs():
  """Soft bounds: |log scale| <= B, |shift| <= S, |log sigma| <= B_p for any network output.

  (tanh saturates to exactly 1 in float32, so the bounds are reached, never exceeded.)
  """
  huge = lambda t: 1e4 * tf.concat([t, -t], -1)  # pylint: disable=unnecessary-lambda-assignment
  y = tf.constant(np.random.default_rng(0).normal(size=(3,) + IMAGE) * 10, tf.float32)
  bounded = lcb.AffineCoupling(huge, IMAGE, max_log_scale=3.0, max_shift=5.0)
  unbounded = lcb.AffineCoupling(huge, IMAGE)
  a = bounded.inverse_log_det_map(y).numpy()
  assert a.min() >= -3.0 and a.max() <= 0.0 and a.min() < -2.9  # the floor is reached
  assert unbounded.inverse_log_det_map(y).numpy().min() < -1e3
  shift, _ = bounded._shift_and_log_scale(y[..., :2])  # pylint: disable=protected-access
  assert np.abs(shift.numpy()).max() <= 5.0
  # the sampling direction amplifies by at most e^B per element (plus the bounded shift)
  x = bounded.forward(y).numpy()
  assert np.all(np.abs(x[..., 2:]) <= np.exp(3.0) * (np.abs(y.numpy()[..., 2:]) + 5.0))
  tanh = lcb.AffineCoupling(huge, IMAGE, scale_fn="tanh")
  assert np.abs(tanh.inverse_log_det_map(y).numpy()).max() <= 2.0  # RealNVP's default B = 2
  fo = lcb.FactorOut(tfb.Identity(), IMAGE, prior="conditional", prior_network=huge,
                     max_log_sigma=3.0)
  terms = fo.inverse_log_det_map(y).numpy()[..., 2:]
  assert 2.9 < np.abs(terms).max() <= 3.0
  with pytest.raises(ValueError, match=r"max_log_scale must be None or a finite number > 0, "
                                       r"got 0"):
    lcb.AffineCoupling(huge, IMAGE, max_log_scale=0)
  with pytest.raises(ValueError, match=r"max_shift must be None or a finite number > 0, got "
                                       r"-1.0"):
    lcb.AffineCoupling(huge, IMAGE, max_shift=-1.0)
  with pytest.raises(ValueError, match=r"max_log_sigma must be None or a finite number > 0, "
                                       r"got 'big'"):
    lcb.FactorOut(tfb.Identity(), IMAGE, prior="conditional", prior_network=huge,
                  max_log_sigma="big")


def test_conv1x1_and_actnorm_reject_bad_arguments():
  with pytest.raises(ValueError,
                     match=r"parametrization must be one of \('lu', 'matrix'\), got 'qr'"):
    lcb.InvertibleConv1x1(4, parametrization="qr")
  with pytest.raises(ValueError, match="num_channels must be a positive int, got 0"):
    lcb.InvertibleConv1x1(0)
  with pytest.raises(ValueError, match="num_channels must be a positive int, got 2.0"):
    lcb.ActNorm(2.0)


@pytest.mark.parametrize("name", BAD_INPUT_CASES)
def test_integer_images_are_rejected_with_their_dtype(name):
  factory, event = BAD_INPUT_CASES[name]
  with pytest.raises(ValueError, match="dtype int32"):
    factory().inverse(tf.zeros((1,) + event, tf.int32))
