"""Multi-scale flows from `build_flow`: the bijector contract, densities, sampling, training
state (ActNorm initialisation, variables, checkpoints), a short fit, and bad input."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import lcflow_tf as lf
from lcflow_tf import bijectors as lcb
from tests import bijector_contract as contract

SHAPE = (8, 8, 1)
SMALL = dict(levels=2, steps_per_level=2, hidden_channels=8)
NUM_BINS = 17


def dequantized_digits(n, dtype=np.float32, seed=0, start=0):
  rng = np.random.default_rng(seed)
  k = load_digits().images[start:start + n].reshape(-1, *SHAPE)
  return ((k + rng.random(k.shape)) / NUM_BINS).astype(dtype)


def normal(rng, scale, like):
  """N(0, scale^2) values shaped like the variable `like`, in its dtype."""
  return rng.normal(0.0, scale, tuple(like.shape)).astype(tf.as_dtype(like.dtype).as_numpy_dtype)


def networks_of(flow):
  """(coupling conditioners, prior-network variable lists) of a flow, in a stable order."""
  conditioners, priors = [], []
  for m in flow.bijector.submodules:
    if isinstance(m, lcb.AffineCoupling):
      conditioners.append(m.conditioner)
    elif isinstance(m, lcb.FactorOut):
      priors.append(m.network_variables)
  return conditioners, priors


def seed_networks(flow, seed, last_scale):
  """Deterministic network weights; `last_scale=0` keeps the zero-initialised last layers."""
  conditioners, priors = networks_of(flow)
  for i, net in enumerate(conditioners):
    contract.randomize_network(net, seed * 1000 + i, last_scale)
  rng = np.random.default_rng(seed)
  for variables in priors:
    for v in variables:
      v.assign(normal(rng, last_scale, v))


def perturb_steps(flow, seed, scale=0.05):
  """Non-trivial ActNorm and 1x1-convolution parameters (added to the initialised ones)."""
  rng = np.random.default_rng(seed)
  for m in flow.bijector.submodules:
    if isinstance(m, (lcb.ActNorm, lcb.InvertibleConv1x1)):
      for v in m.trainable_variables:
        v.assign_add(normal(rng, scale, v))


def make_flow(architecture="glow", dtype="float32", seed=0, last_scale=None, **kwargs):
  """A tiny initialised flow with seeded, non-zero weights everywhere.

  The default last-layer scale keeps the flow well conditioned (Jacobian condition number
  below ~10): RealNVP's residual conditioners feed tanh-bounded log-scales through many
  couplings and need smaller last layers than Glow's.
  """
  if last_scale is None:
    last_scale = 0.05 if architecture == "glow" else 0.01
  flow = lf.build_flow(SHAPE, architecture=architecture, dtype=dtype, **{**SMALL, **kwargs})
  seed_networks(flow, seed, last_scale)
  flow.initialize(dequantized_digits(64, np.dtype(dtype), seed))
  assert flow.is_initialized()
  perturb_steps(flow, seed + 1)
  return flow


# --- the bijector contract on whole flows -------------------------------------------------
FLOW_VARIANTS = {
    "glow": dict(architecture="glow"),
    "realnvp": dict(architecture="realnvp"),
    "glow-L3-additive-matrix-random-split": dict(
        architecture="glow", levels=3, steps_per_level=1, coupling="additive", conv1x1="matrix",
        split="random"),
    "realnvp-L3-conditional-sigmoid-random-split": dict(
        architecture="realnvp", levels=3, steps_per_level=1, split_prior="conditional",
        scale_fn="sigmoid", resnet_blocks=1, split="random"),
}
FLOW_CASES = [
    contract.Case(name, lambda dtype, kw=kw: make_flow(dtype=dtype.name, **kw).bijector,
                  SHAPE, SHAPE)
    for name, kw in FLOW_VARIANTS.items()
]
FLOW_IDS = [c.name for c in FLOW_CASES]


# The slowest variants run in the slow tier (`pytest --slow`); each architecture keeps a case
# in the default tier.
SLOW_FLOW_CASES = ("realnvp-L3-conditional-sigmoid-random-split", "realnvp-K1")


def tiered(cases):
  return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in SLOW_FLOW_CASES
                       else []) for c in cases]


@pytest.mark.parametrize("case", tiered(FLOW_CASES))
def test_flow_bijector_contract_float64(case):
  bijector = contract.run_float64_contract(case)
  # the perturbed networks are active: the log-det depends on the input (with zero last
  # layers every coupling and prior would have an input-independent log-det)
  y = contract.random_images((8,), SHAPE, tf.float64, 4)
  assert np.std(bijector.inverse_log_det_jacobian(y, event_ndims=3).numpy()) > 0.05


# One step per level (RealNVP: one residual block) keeps XLA compilation of a whole flow short.
COMPILED_FLOW_CASES = [
    contract.Case(f"{arch}-K1", lambda dtype, a=arch: make_flow(
        a, dtype=dtype.name, steps_per_level=1, resnet_blocks=1).bijector, SHAPE, SHAPE)
    for arch in ("glow", "realnvp")
]


@pytest.mark.parametrize("case", tiered(COMPILED_FLOW_CASES))
def test_flow_bijector_contract_float32_modes(case):
  contract.run_float32_modes(case)


@pytest.mark.parametrize("case", FLOW_CASES[:2], ids=FLOW_IDS[:2])
def test_flow_bijector_contract_float32_digits(case):
  _, latents = contract.run_digits_round_trip(case)
  assert np.std(latents) > 0.3  # a real encoding, not a collapsed one
  # batch shapes () and [2, 3], eagerly, at the full size
  for shape, seed in (((), 1), ((2, 3), 2)):
    contract.assert_contract(case.make(tf.float32),
                             contract.random_latents(shape, SHAPE, tf.float32, seed),
                             contract.random_images(shape, SHAPE, tf.float32, seed))


# --- densities, coding, sampling --------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_log_prob_matches_tfp_distribution(architecture, dtype, rtol):
  flow = make_flow(architecture, dtype)
  x = dequantized_digits(16, np.dtype(dtype), seed=5, start=100)
  log_prob = flow.log_prob(x).numpy()
  assert log_prob.shape == (16,)
  np.testing.assert_allclose(log_prob, flow.distribution.log_prob(x), rtol=rtol)
  # base log-density of the latent plus the inverse log-det, written out
  z = flow.encode(x).numpy()
  ildj = flow.bijector.inverse_log_det_jacobian(x, event_ndims=3).numpy()
  by_hand = np.sum(-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi), axis=(1, 2, 3)) + ildj
  np.testing.assert_allclose(log_prob, by_hand, rtol=rtol)
  # the same inside tf.function, and for batch shapes () and [2, 3]
  if dtype == "float32":
    np.testing.assert_allclose(tf.function(flow.log_prob)(x), log_prob, rtol=1e-6)
  np.testing.assert_allclose(flow.log_prob(x[0]), log_prob[0], rtol=rtol)
  np.testing.assert_allclose(flow.log_prob(x[:6].reshape(2, 3, *SHAPE)),
                             log_prob[:6].reshape(2, 3), rtol=rtol)


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_encode_decode_round_trip(architecture):
  flow = make_flow(architecture)
  x = contract.digits(32).numpy()
  z = flow.encode(x)
  assert z.shape == (32,) + SHAPE
  assert np.max(np.abs(flow.decode(z).numpy() - x)) <= 1e-5
  z2 = np.random.default_rng(0).standard_normal((8,) + SHAPE).astype(np.float32)
  assert np.max(np.abs(flow.encode(flow.decode(z2)).numpy() - z2)) <= 1e-5


def test_sample_shapes_seed_and_temperature():
  flow = make_flow("glow")
  a = flow.sample(5, temperature=0.7, seed=3)
  assert a.shape == (5,) + SHAPE and a.dtype == tf.float32
  assert np.all(np.isfinite(a.numpy()))
  np.testing.assert_array_equal(a, flow.sample(5, temperature=0.7, seed=3))
  assert np.max(np.abs(a.numpy() - flow.sample(5, temperature=0.7, seed=4).numpy())) > 1e-2
  assert flow.sample(0, seed=1).shape == (0,) + SHAPE
  # temperature scales the latent: encode(sample(T)) == T * encode(sample(1)), same seed
  z1 = flow.encode(flow.sample(5, temperature=1.0, seed=3)).numpy()
  np.testing.assert_allclose(flow.encode(a), 0.7 * z1, atol=1e-4)
  assert 0.5 < np.std(z1) < 1.5
  np.testing.assert_array_equal(flow.sample(4, temperature=0.0, seed=9),
                                flow.decode(tf.zeros((4,) + SHAPE)))
  with pytest.raises(ValueError, match="n must be an integer >= 0, got -1"):
    flow.sample(-1)
  with pytest.raises(ValueError, match="temperature must be >= 0, got -0.5"):
    flow.sample(2, temperature=-0.5)


def test_sample_and_log_prob_is_sample_plus_its_density():
  flow = make_flow("glow")
  x, log_prob = flow.sample_and_log_prob(6, temperature=0.7, seed=3)
  assert x.shape == (6,) + SHAPE and log_prob.shape == (6,)
  np.testing.assert_array_equal(x, flow.sample(6, temperature=0.7, seed=3))
  # the model's density at the samples: what log_prob (the inverse pass) gives, and TFP's
  np.testing.assert_allclose(log_prob, flow.log_prob(x), rtol=1e-4)
  np.testing.assert_allclose(log_prob, flow.distribution.log_prob(x), rtol=1e-4)
  assert np.std(log_prob.numpy()) > 0.1
  x0, lp0 = flow.sample_and_log_prob(0, seed=1)
  assert x0.shape == (0,) + SHAPE and lp0.shape == (0,)
  with pytest.raises(ValueError, match="sample_and_log_prob: n must be an integer >= 0, got 2.5"):
    flow.sample_and_log_prob(2.5)
  with pytest.raises(ValueError, match="sample_and_log_prob: temperature must be >= 0"):
    flow.sample_and_log_prob(2, temperature=-1.0)


def _convolutions(fn):
  """Conv2D ops, and the products of `networks.glow_conditioner` (one per convolution)."""
  graph = tf.function(fn).get_concrete_function().graph
  return sum(op.type == "Conv2D" or (op.type == "MatMul" and "glow_conditioner" in op.name)
             for op in graph.get_operations())


def _convolutions_of_networks(bijector):
  """Convolutions that one run of every network inside `bijector` takes (couplings, priors)."""
  nets = {id(n): n for m in (bijector,) + tuple(bijector.submodules)
          for n in getattr(m, "networks", ())}
  return _convolutions(lambda: [n(tf.zeros((1, 2, 2, n.inputs[0].shape[-1])))
                                for n in nets.values()]), len(nets)


def test_every_network_runs_once_per_pass():
  """Counts the convolutions in the traced graph: one pass runs every coupling network and
  learned prior exactly once, for sampling with its log-density, for log_prob, and for a
  junction's forward log-det (its inner levels' networks once each, also two levels deep)."""
  flow = make_flow("glow", levels=3, steps_per_level=1)
  once, networks = _convolutions_of_networks(flow.bijector)
  assert networks == 5 and once == 3 * 3 + 2  # 3 couplings (3 convolutions), 2 priors (1)
  x = dequantized_digits(4)
  assert _convolutions(lambda: flow.sample_and_log_prob(4, seed=1)) == once
  assert _convolutions(lambda: flow.sample(4, seed=1)) == once
  assert _convolutions(lambda: flow.log_prob(x)) == once
  junction = flow.junctions[0]
  inner, _ = _convolutions_of_networks(junction)
  z = tf.zeros((2,) + junction.event_shape)
  assert 0 < inner < once
  assert _convolutions(lambda: junction.forward_and_log_det(z)) == inner
  assert _convolutions(lambda: junction.forward_log_det_jacobian(z, event_ndims=3)) == inner


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bits_per_dim_formula(dtype):
  flow = make_flow("realnvp", dtype)
  k = load_digits().images[:8].reshape(-1, *SHAPE).astype(np.uint8)
  bpd = flow.bits_per_dim(k, num_bins=NUM_BINS, seed=7).numpy()
  assert bpd.shape == (8,) and bpd.dtype == np.dtype(dtype)
  # the dequantisation noise the seed stands for, and the formula
  u = tf.random.stateless_uniform(k.shape, seed=[7, 0], dtype=dtype).numpy()
  log_prob = flow.log_prob((k + u) / NUM_BINS).numpy()
  d = float(np.prod(SHAPE))
  expected = -(log_prob - d * math.log(NUM_BINS)) / (d * math.log(2.0))
  np.testing.assert_allclose(bpd, expected, rtol=1e-6 if dtype == "float32" else 1e-12)
  np.testing.assert_array_equal(bpd, flow.bits_per_dim(k.astype(np.int32), num_bins=NUM_BINS,
                                                       seed=7))
  assert np.max(np.abs(bpd - flow.bits_per_dim(k, num_bins=NUM_BINS, seed=8).numpy())) > 1e-4
  # n_bits=4 is num_bins=16 (values must lie in [0, 16) then)
  k16 = np.minimum(k, 15)
  np.testing.assert_array_equal(flow.bits_per_dim(k16, n_bits=4, seed=7),
                                flow.bits_per_dim(k16, num_bins=16, seed=7))
  with pytest.raises(ValueError, match="expected integer images in \\[0, 17\\), got dtype float"):
    flow.bits_per_dim(k.astype(np.float32) / 17, num_bins=NUM_BINS)
  with pytest.raises(ValueError, match="exactly one of n_bits or num_bins"):
    flow.bits_per_dim(k, n_bits=4, num_bins=16)


# --- variables and training ---------------------------------------------------------------
def expected_variable_count(architecture, levels, steps, conv1x1="lu", prior=None,
                            resnet_blocks=2):
  """Count derived from the architecture (see lcflow_tf.flows' layout)."""
  actnorm = 2                                          # loc, log_scale
  prior_net = 2 if (prior or {"glow": "conditional", "realnvp": "standard"}[architecture]) \
      == "conditional" else 0                          # one conv: kernel, bias
  if architecture == "glow":
    conv = 3 if conv1x1 == "lu" else 1                 # log_s, lower, upper | weight
    coupling = 6                                       # 3 convs
    return levels * steps * (actnorm + conv + coupling) + (levels - 1) * prior_net
  coupling = 2 + 4 * resnet_blocks + 2                 # first conv, 2 convs per block, last
  couplings = (levels - 1) * 2 * steps + steps + 1     # K checker + K channel; last K+1 checker
  return couplings * (actnorm + coupling) + (levels - 1) * prior_net


@pytest.mark.parametrize("kwargs", [
    dict(architecture="glow", levels=2, steps_per_level=2),
    dict(architecture="glow", levels=3, steps_per_level=1, conv1x1="matrix"),
    dict(architecture="glow", levels=2, steps_per_level=3, split_prior="standard"),
    dict(architecture="realnvp", levels=2, steps_per_level=2),
    dict(architecture="realnvp", levels=3, steps_per_level=1, resnet_blocks=1,
         split_prior="conditional"),
], ids=["glow", "glow-L3-matrix", "glow-standard", "realnvp", "realnvp-L3-conditional"])
def test_trainable_variable_count(kwargs):
  flow = lf.build_flow(SHAPE, hidden_channels=4, **kwargs)
  variables = flow.trainable_variables
  assert len({id(v) for v in variables}) == len(variables)
  assert all(v.trainable for v in variables)
  assert len(variables) == expected_variable_count(
      kwargs["architecture"], kwargs["levels"], kwargs["steps_per_level"],
      kwargs.get("conv1x1", "lu"), kwargs.get("split_prior"), kwargs.get("resnet_blocks", 2))


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_gradients_reach_every_variable_and_adam_moves_all(architecture):
  flow = lf.build_flow(SHAPE, architecture=architecture, **SMALL)  # zero-initialised last layers
  x = dequantized_digits(32)
  flow.initialize(x)
  variables = flow.trainable_variables
  before = [v.numpy().copy() for v in variables]
  opt = keras.optimizers.Adam(1e-3)
  for step in range(3):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    grads = tape.gradient(loss, variables)
    if step == 0:
      missing = [v.path if hasattr(v, "path") else v.name for v, g in zip(variables, grads)
                 if g is None]
      assert not missing, f"not connected to log_prob: {missing}"
    opt.apply_gradients(zip(grads, variables))
  unchanged = [v.name for v, b in zip(variables, before) if np.array_equal(v.numpy(), b)]
  assert not unchanged, f"unchanged after 3 Adam steps: {unchanged}"
  # once every weight is non-zero, every variable gets a non-zero gradient
  with tf.GradientTape() as tape:
    loss = -tf.reduce_mean(flow.log_prob(x))
  grads = tape.gradient(loss, variables)
  assert all(float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def _record_actnorm_outputs(flow, monkeypatch):
  outputs = []
  for a in flow.actnorms:
    original = a._inverse_and_log_det_map  # pylint: disable=protected-access

    def recording(y, original=original, a=a):
      x, m = original(y)
      outputs.append((a, x.numpy()))
      return x, m
    monkeypatch.setattr(a, "_inverse_and_log_det_map", recording)
  return outputs


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_actnorm_initialisation_cascades(architecture, monkeypatch):
  flow = lf.build_flow(SHAPE, architecture=architecture, dtype="float64", **SMALL)
  seed_networks(flow, 3, last_scale=0.05)  # the steps between ActNorms really change the data
  x = dequantized_digits(64, np.float64, seed=2)
  outputs = _record_actnorm_outputs(flow, monkeypatch)
  flow.initialize(x)
  assert [a for a, _ in outputs] != [] and len(outputs) == len(flow.actnorms)
  assert len({id(a) for a, _ in outputs}) == len(outputs)  # each ActNorm once
  for a, out in outputs:
    assert bool(a.initialized.numpy())
    axes = tuple(range(out.ndim - 1))
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-8, err_msg=a.name)
    np.testing.assert_allclose(out.std(axis=axes), 1.0, rtol=1e-4, err_msg=a.name)
  # the first ActNorm normalises the (squeezed) images themselves
  first_out = outputs[0][1]
  if architecture == "glow":
    squeezed = tf.nn.space_to_depth(x, 2).numpy()
    np.testing.assert_allclose(outputs[0][0].loc.numpy(), squeezed.mean(axis=(0, 1, 2)),
                               rtol=1e-10)
  else:
    np.testing.assert_allclose(outputs[0][0].loc.numpy(), x.mean(axis=(0, 1, 2)), rtol=1e-10)
  assert first_out.shape[0] == 64
  # a later ActNorm sees transformed data, so its statistics differ from the raw input's
  assert abs(float(outputs[-1][0].loc.numpy()[0]) - float(x.mean())) > 1e-3
  # no re-initialisation on another batch, unless forced
  locs = [a.loc.numpy().copy() for a in flow.actnorms]
  other = dequantized_digits(64, np.float64, seed=3, start=700)
  flow.log_prob(other)
  flow.initialize(other)
  for a, loc in zip(flow.actnorms, locs):
    np.testing.assert_array_equal(a.loc.numpy(), loc)
  flow.initialize(other, force=True)
  assert not np.array_equal(flow.actnorms[0].loc.numpy(), locs[0])


def test_log_prob_initialises_a_fresh_flow_on_its_first_batch():
  flow = lf.build_flow(SHAPE, architecture="glow", **SMALL)
  assert not flow.is_initialized()
  x = dequantized_digits(32)
  flow.log_prob(x)
  assert flow.is_initialized()
  squeeze, first = flow.bijector.bijectors[:2]  # Glow's level 0: squeeze, then ActNorm
  assert isinstance(squeeze, lcb.Squeeze) and isinstance(first, lcb.ActNorm)
  z = first.inverse(squeeze.inverse(x)).numpy()
  np.testing.assert_allclose(z.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.std(axis=(0, 1, 2)), 1.0, rtol=1e-3)


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_checkpoint_restore_is_bit_for_bit_without_reinitialisation(architecture, tmp_path):
  kwargs = dict(architecture=architecture, split="lc")
  flow = make_flow(**kwargs)
  rng = np.random.default_rng(4)
  for j in flow.junctions:  # non-identity split, as fixed from LC statistics
    j.permutation.set_indices(rng.permuted(
        np.broadcast_to(np.arange(j.event_shape[-1]), j.event_shape).copy(), axis=-1))
  flow.split_fixed.assign(True)
  x = dequantized_digits(16, seed=9, start=300)
  expected = flow.log_prob(x).numpy()
  path = tf.train.Checkpoint(flow=flow).write(str(tmp_path / "ckpt"))

  fresh = lf.build_flow(SHAPE, dtype="float32", **{**SMALL, **kwargs})
  seed_networks(fresh, 77, last_scale=0.05)
  assert not fresh.is_initialized()
  status = tf.train.Checkpoint(flow=fresh).read(path)
  status.assert_consumed()
  status.assert_existing_objects_matched()
  assert fresh.is_initialized()  # before any call: the flags came from the checkpoint
  assert bool(fresh.split_fixed.numpy())
  for a, b in zip(flow.junctions, fresh.junctions):
    np.testing.assert_array_equal(a.permutation.indices.numpy(), b.permutation.indices.numpy())
  for a, b in zip(flow.trainable_variables, fresh.trainable_variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  locs = [a.loc.numpy().copy() for a in fresh.actnorms]
  other = dequantized_digits(64, seed=10, start=900)  # would give other ActNorm statistics
  fresh.log_prob(other)
  np.testing.assert_array_equal(fresh.log_prob(x).numpy(), expected)
  for a, loc in zip(fresh.actnorms, locs):
    np.testing.assert_array_equal(a.loc.numpy(), loc)


def test_astype_copies_the_whole_state_and_shares_nothing():
  flow = make_flow(split="lc")
  x = dequantized_digits(16, seed=9, start=300)
  _, sums = flow.log_prob_and_lc_batch(x)
  flow.lc_statistics.update(sums)
  flow.fix_split()  # LC permutations, statistics and the fixed flag must travel
  copy = flow.astype("float64")
  assert copy is not flow and copy.config.dtype == "float64" and copy.dtype == tf.float64
  assert copy.config == flow.config.__class__(**{**flow.config.__dict__, "dtype": "float64"})
  assert copy.is_initialized() and bool(copy.split_fixed.numpy())
  for a, b in zip(flow.junctions, copy.junctions, strict=True):
    np.testing.assert_array_equal(a.permutation.indices.numpy(), b.permutation.indices.numpy())
  for a, b in zip(flow.lc_statistics.variables, copy.lc_statistics.variables, strict=True):
    np.testing.assert_array_equal(tf.cast(a, tf.float64).numpy(), b.numpy())
  for a, b in zip(lcb.collect_variables(flow.bijector), lcb.collect_variables(copy.bijector),
                  strict=True):
    assert b.dtype == (tf.float64 if a.dtype == tf.float32 else a.dtype)
    np.testing.assert_array_equal(tf.cast(a, b.dtype).numpy(), np.asarray(b))
  expected = flow.log_prob(x).numpy()
  in_float64 = copy.log_prob(x)
  assert in_float64.dtype == tf.float64
  np.testing.assert_allclose(in_float64.numpy(), expected, rtol=1e-5)
  # Round trips are exact to float64's precision, not float32's.
  x64 = x.astype(np.float64)
  assert np.max(np.abs(copy.decode(copy.encode(x64)).numpy() - x64)) < 1e-12
  # Nothing shared: changing the original leaves the copy as it was.
  for v in flow.trainable_variables:
    v.assign_add(tf.ones_like(v))
  np.testing.assert_array_equal(copy.log_prob(x).numpy(), in_float64.numpy())
  back = copy.astype(tf.float32)  # a tf.DType works too; float64 -> float32 -> same numbers
  np.testing.assert_allclose(back.log_prob(x).numpy(), expected, rtol=1e-6)
  assert flow.astype(np.float64).dtype == tf.float64  # and a NumPy dtype


@pytest.mark.slow
def test_short_fit_lowers_bits_per_dim():
  """Tiny Glow (L=2, K=2, hidden 32) on digits: 300 Adam steps (lr 1e-3, batch 64) take more
  than 1.2 bits/dim off the held-out bits/dim and end well below the uniform model's
  log2(17) = 4.09 (measured over seeds: 4.50 -> 3.12..3.14, i.e. 1.36..1.38 lower)."""
  k = load_digits().images.reshape(-1, *SHAPE).astype(np.int32)
  train, test = k[:1500], k[1500:]
  flow = lf.build_flow(SHAPE, architecture="glow", levels=2, steps_per_level=2,
                       hidden_channels=32)
  seed_networks(flow, 0, last_scale=0.0)
  rng = np.random.default_rng(0)
  flow.initialize(((train[:256] + rng.random((256,) + SHAPE)) / NUM_BINS).astype(np.float32))

  def held_out_bpd():
    return float(tf.reduce_mean(flow.bits_per_dim(test, num_bins=NUM_BINS, seed=3)))

  initial = held_out_bpd()
  opt = keras.optimizers.Adam(1e-3)
  variables = flow.trainable_variables

  @tf.function
  def train_step(x):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  losses = []
  for _ in range(300):
    batch = train[rng.integers(0, len(train), 64)]
    losses.append(float(train_step(
        ((batch + rng.random(batch.shape)) / NUM_BINS).astype(np.float32))))
  final = held_out_bpd()
  assert np.all(np.isfinite(losses))
  assert initial - final >= 1.2, (initial, final)
  assert final < math.log2(NUM_BINS) - 0.8, final
  assert np.mean(losses[-20:]) < np.mean(losses[:20])


# --- bad input -------------------------------------------------------------------------------
def test_image_size_must_fit_the_squeezes():
  with pytest.raises(ValueError, match=r"glow with levels=2 squeezes 2 times, so H and W must be "
                                       r"divisible by 4; got image_shape \(6, 6, 1\)"):
    lf.build_flow((6, 6, 1), architecture="glow", **SMALL)
  lf.build_flow((6, 6, 1), architecture="realnvp", **SMALL)  # squeezes once: fine
  with pytest.raises(ValueError, match=r"realnvp with levels=3 squeezes 2 times, so H and W "
                                       r"must be divisible by 4; got image_shape \(8, 6, 1\)"):
    lf.build_flow((8, 6, 1), architecture="realnvp", levels=3, steps_per_level=1,
                  hidden_channels=4)
  with pytest.raises(ValueError, match="divisible by 8"):
    lf.build_flow((12, 16, 1), architecture="glow", levels=3, steps_per_level=1,
                  hidden_channels=4)


@pytest.mark.parametrize("arg,value,allowed", [
    ("architecture", "nice", r"\['glow', 'realnvp'\]"),
    ("coupling", "spline", r"\['affine', 'additive'\]"),
    ("split", "middle",
     r"\['static', 'random', 'lc', 'lc_reverse', 'logdet', 'logdet_reverse', 'variance'\]"),
    ("conv1x1", "qr", r"\['lu', 'matrix'\]"),
    ("split_prior", "learned", r"\[None, 'standard', 'conditional'\]"),
    ("scale_fn", "exp", r"\[None, 'sigmoid', 'tanh'\]"),
    ("dtype", "float16", r"\['float32', 'float64'\]"),
])
def test_unknown_names_list_allowed_values(arg, value, allowed):
  with pytest.raises(ValueError, match=rf"{arg} must be one of {allowed}, got '{value}'"):
    lf.build_flow(SHAPE, **{**SMALL, arg: value})


def test_bad_numbers_and_shapes_in_config():
  with pytest.raises(ValueError, match="levels must be an integer >= 1, got 0"):
    lf.build_flow(SHAPE, levels=0)
  with pytest.raises(ValueError, match="steps_per_level must be an integer >= 1, got True"):
    lf.build_flow(SHAPE, steps_per_level=True)
  with pytest.raises(ValueError, match=r"image_shape must be three positive ints"):
    lf.build_flow((8, 8), **SMALL)


@pytest.fixture(scope="module")
def small_flow():
  return make_flow("glow")


def test_log_prob_rejects_wrong_rank_and_event_shape(small_flow):
  with pytest.raises(ValueError, match=r"expected images of shape \[\.\.\., 8, 8, 1\], got shape "
                                       r"\[8, 8\]"):
    small_flow.log_prob(tf.zeros([8, 8]))
  with pytest.raises(ValueError, match=r"expected images of shape \[\.\.\., 8, 8, 1\], got shape "
                                       r"\[2, 8, 8, 3\]"):
    small_flow.log_prob(tf.zeros([2, 8, 8, 3]))
  with pytest.raises(ValueError, match=r"\[\.\.\., 8, 8, 1\], got shape \[2, 4, 4, 4\]"):
    small_flow.log_prob(tf.zeros([2, 4, 4, 4]))
  with pytest.raises(ValueError, match=r"\[\.\.\., 8, 8, 1\], got shape \[2, 8, 8, 3\]"):
    small_flow.decode(tf.zeros([2, 8, 8, 3]))


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_log_prob_rejects_integer_images_naming_the_dtype(small_flow, dtype):
  images = np.zeros((2,) + SHAPE, dtype)
  with pytest.raises(ValueError, match=rf"got dtype {np.dtype(dtype).name}; use bits_per_dim"):
    small_flow.log_prob(images)
