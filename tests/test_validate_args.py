"""`Flow(validate_args=True)`: TFP's convention for the values entering a flow.

With the flag, NaN, infinite and out-of-[0, 1) images raise in every method that takes
model-space images (`ValueError` eagerly, `InvalidArgumentError` inside a `tf.function`),
non-finite latents raise in `decode`, and valid inputs give exactly the values of a flow
without it. Without the flag (the default, what training uses) nothing is checked: bad
values pass silently and the traced graph holds no check op (XLA compiles it). The flag is
a runtime setting, not a `FlowConfig` field; `astype` and the SavedModel export keep it.
"""

import dataclasses
import math
import re

import numpy as np
import pytest
import tensorflow as tf

import lcflow_tf as lf
from lcflow_tf import bijectors as lcb
from lcflow_tf import data
from lcflow_tf import evaluation
from lcflow_tf import export

SHAPE = (8, 8, 1)
TINY = dict(levels=2, steps_per_level=1, hidden_channels=8)
NUM_BINS = 17
IMAGES_RULE = r"images must be finite values in \[0, 1\) \(dequantised intensities\)"
LATENTS_RULE = r"latents must be finite values"
# A bad value at pixel (0, 3, 3, 0) of `batch`, the eager message's tail, the graph's tail.
BAD_VALUES = {
    "nan": (np.nan, r"got 1 non-finite values \(1 NaN, 0 inf\) of 128\.$",
            r"got 1 non-finite values \(NaN or inf\) of 128; the finite values are in "
            r"\[0\.25, 0\.75\]"),
    "+inf": (np.inf, r"got 1 non-finite values \(0 NaN, 1 inf\) of 128\.$",
             r"got 1 non-finite values \(NaN or inf\) of 128"),
    "-inf": (-np.inf, r"got 1 non-finite values \(0 NaN, 1 inf\) of 128\.$",
             r"got 1 non-finite values \(NaN or inf\) of 128"),
    "5.0": (5.0, r"got values in \[0\.25, 5\.0\]\.$",
            r"got 0 non-finite values \(NaN or inf\) of 128; the finite values are in "
            r"\[0\.25, 5\]"),
    "-0.1": (-0.1, r"got values in \[-0\.1, 0\.75\]\.$",
             r"got 0 non-finite values \(NaN or inf\) of 128; the finite values are in "
             r"\[-0\.1, 0\.75\]"),
    "1.0": (1.0, r"got values in \[0\.25, 1\.0\]\.$",
            r"got 0 non-finite values \(NaN or inf\) of 128; the finite values are in "
            r"\[0\.25, 1\]"),
}
# Every method taking model-space images, as a call returning tensors (for tf.function).
METHODS = {
    "log_prob": lambda f, x: f.log_prob(x),
    "encode": lambda f, x: f.encode(x),
    "encode_with_log_det_map": lambda f, x: f.encode_with_log_det_map(x),
    "log_prob_and_lc_batch": lambda f, x: f.log_prob_and_lc_batch(x),
    "likelihood_contributions": lambda f, x: f.likelihood_contributions(x).log_prob,
    "initialize": lambda f, x: f.initialize(x, force=True),
}
GRAPH_METHODS = [m for m in METHODS if m != "initialize"]  # initialize is eager-only


def batch(bad=None):
  """[2, 8, 8, 1]: 0.5 everywhere, 0.25 and 0.75 once; `bad` at (0, 3, 3, 0)."""
  x = np.full((2,) + SHAPE, 0.5, np.float32)
  x[0, 0, 0, 0], x[1, 7, 7, 0] = 0.25, 0.75
  if bad is not None:
    x[0, 3, 3, 0] = bad
  return x


def copy_state(source, target):
  """Assigns every variable of `source` (weights, ActNorm, permutations, LC state) to `target`."""
  def state(flow):
    return [*lcb.collect_variables(flow.bijector), *flow.lc_statistics.variables,
            flow.split_fixed]
  for s, t in zip(state(source), state(target), strict=True):
    t.assign(s)


@pytest.fixture(scope="module")
def flows():
  """(plain, checked): one LC Glow with non-trivial weights, without and with validate_args."""
  plain = lf.build_flow(SHAPE, split="lc", **TINY)
  rng = np.random.default_rng(0)
  plain.initialize(rng.random((16,) + SHAPE).astype(np.float32))
  for v in plain.trainable_variables:
    v.assign(v + 0.05 * rng.standard_normal(tuple(v.shape)).astype(np.float32))
  _, sums = plain.log_prob_and_lc_batch(rng.random((16,) + SHAPE).astype(np.float32))
  plain.lc_statistics.update(sums)
  plain.fix_split()
  checked = lf.Flow(plain.config, validate_args=True)
  copy_state(plain, checked)
  return plain, checked


# --- with validate_args: bad values raise ----------------------------------------------------
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("value", list(BAD_VALUES))
def test_bad_images_raise_eagerly(flows, method, value):
  bad, tail, _ = BAD_VALUES[value]
  with pytest.raises(ValueError, match=rf"^Flow\.{method}: {IMAGES_RULE}; {tail}"):
    METHODS[method](flows[1], batch(bad))


@pytest.fixture(scope="module")
def traced(flows):
  """{method: tf.function of it on the checked flow}, traced once for every bad value."""
  return {m: tf.function(lambda x, m=m: METHODS[m](flows[1], x), autograph=False)
          for m in GRAPH_METHODS}


@pytest.mark.parametrize("method", GRAPH_METHODS)
@pytest.mark.parametrize("value", list(BAD_VALUES))
def test_bad_images_raise_in_tf_function(traced, method, value):
  bad, _, tail = BAD_VALUES[value]
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"Flow\.{method}: {IMAGES_RULE}; {tail}"):
    traced[method](tf.constant(batch(bad)))


def test_message_counts_every_problem_at_once(flows):
  x = batch(5.0)
  x[1, 2, 2, 0], x[1, 4, 4, 0] = np.nan, -np.inf
  with pytest.raises(ValueError, match=r"; got 2 non-finite values \(1 NaN, 1 inf\) of 128, "
                                       r"and finite values in \[0\.25, 5\.0\]\.$"):
    flows[1].log_prob(x)


def test_bits_per_dim_keeps_its_integer_check_and_passes_the_value_check(flows):
  plain, checked = flows
  k = np.random.default_rng(1).integers(0, NUM_BINS, (3,) + SHAPE)
  np.testing.assert_array_equal(checked.bits_per_dim(k, num_bins=NUM_BINS, seed=4).numpy(),
                                plain.bits_per_dim(k, num_bins=NUM_BINS, seed=4).numpy())
  with pytest.raises(ValueError, match=r"integers in \[0, 17\) \(bins=17\); got values in "
                                       r"\[17, 17\]"):
    checked.bits_per_dim(np.full((1,) + SHAPE, 17), num_bins=NUM_BINS)


def test_bits_per_dim_top_bin_rounding_to_one_is_kept_below_one(flows):
  """(k + u) / bins with k = bins - 1 can round to 1.0 in float32; it must not trip the check."""
  plain, checked = flows
  bins, seed = 2 ** 16, 5
  k = np.full((16,) + SHAPE, bins - 1)
  u = tf.random.stateless_uniform(k.shape, seed=[seed, 0])  # bits_per_dim's noise
  assert np.sum(((tf.cast(k, tf.float32) + u) / bins).numpy() == 1.0) == 4  # for this seed
  np.testing.assert_array_equal(checked.bits_per_dim(k, n_bits=16, seed=seed).numpy(),
                                plain.bits_per_dim(k, n_bits=16, seed=seed).numpy())


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_decode_rejects_non_finite_latents(flows, value):
  z = np.zeros((2,) + SHAPE, np.float32)
  z[1, 5, 5, 0] = value
  with pytest.raises(ValueError, match=rf"^Flow\.decode: {LATENTS_RULE}; got 1 non-finite"):
    flows[1].decode(z)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"Flow\.decode: {LATENTS_RULE}; got 1 non-finite values"):
    tf.function(flows[1].decode, autograph=False)(tf.constant(z))


def test_decode_accepts_any_finite_latent(flows):
  plain, checked = flows
  z = np.random.default_rng(2).normal(0.0, 5.0, (2,) + SHAPE).astype(np.float32)
  np.testing.assert_array_equal(checked.decode(z).numpy(), plain.decode(z).numpy())


# --- valid inputs: the same values with and without ------------------------------------------
def valid_images():
  x = np.random.default_rng(5).random((4,) + SHAPE).astype(np.float32)
  x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, np.nextafter(np.float32(1.0), np.float32(0.0))
  return x


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("method", GRAPH_METHODS)
def test_valid_images_give_identical_results(flows, method, traced):
  x = tf.constant(valid_images())
  outputs = []
  for flow in flows:
    def call(images, flow=flow):
      return METHODS[method](flow, images)
    fn = tf.function(call, autograph=False) if traced else call
    outputs.append([t.numpy() for t in tf.nest.flatten(fn(x))])
  assert len(outputs[0]) == len(outputs[1]) >= 1
  for a, b in zip(*outputs):
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)


# --- without validate_args: nothing changes --------------------------------------------------
def test_without_validate_args_bad_values_pass_silently(flows):
  """The documented default: NaN/inf give NaN for their image, out-of-range values a
  meaningless finite density, non-finite latents NaN images; nothing raises."""
  plain = flows[0]
  assert not plain.validate_args and not lf.build_flow(SHAPE, **TINY).validate_args
  x = np.concatenate([batch(bad)[:1] for bad in (np.nan, np.inf, -np.inf, 5.0, -0.1, 1.0)])
  log_prob = plain.log_prob(np.concatenate([x, batch()[1:]])).numpy()
  assert np.all(np.isnan(log_prob[:3])) and np.all(np.isfinite(log_prob[3:]))
  z = np.zeros((1,) + SHAPE, np.float32)
  z[0, 0, 0, 0] = np.nan
  assert np.isnan(plain.decode(z).numpy()).any()


def op_types(concrete):
  """Every op type in a concrete function's graph and in the functions it calls."""
  graph = concrete.graph
  types = {op.type for op in graph.get_operations()}
  for function in graph.as_graph_def().library.function:
    types |= {node.op for node in function.node_def}
  return types


def test_without_validate_args_the_graph_has_no_check_ops(flows):
  spec = tf.TensorSpec((None,) + SHAPE, tf.float32)
  checks = {"Assert", "StringFormat", "IsFinite"}  # not If: ActNorm's initialisation has one
  for method in ("log_prob", "log_prob_and_lc_batch", "encode"):
    for flow, expected in zip(flows, (False, True)):
      fn = tf.function(lambda x, flow=flow: METHODS[method](flow, x), autograph=False)
      types = op_types(fn.get_concrete_function(spec))
      assert bool(types & checks) == expected, (method, flow.validate_args, types & checks)
  spec_z = tf.TensorSpec((None,) + SHAPE, tf.float32)
  types = op_types(tf.function(flows[0].decode).get_concrete_function(spec_z))
  assert not types & checks


# --- the flag itself -------------------------------------------------------------------------
@pytest.mark.parametrize("flag", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_astype_keeps_the_flag(flows, flag, dtype):
  copy = flows[int(flag)].astype(dtype)
  assert copy.validate_args is flag and copy.config.dtype == dtype
  x = batch(np.nan).astype(dtype)
  if flag:
    with pytest.raises(ValueError, match=rf"^Flow\.log_prob: {IMAGES_RULE}; got 1 non-finite"):
      copy.log_prob(x)
  else:
    assert np.isnan(copy.log_prob(x).numpy()[0])


def test_validate_args_is_a_runtime_setting_not_a_config_field():
  assert "validate_args" not in {f.name for f in dataclasses.fields(lf.FlowConfig)}
  checked = lf.build_flow(SHAPE, validate_args=True, **TINY)
  assert checked.validate_args is True
  assert checked.config == lf.build_flow(SHAPE, **TINY).config
  with pytest.raises(AttributeError):
    checked.validate_args = False  # fixed at construction: traced functions stay consistent


@pytest.mark.parametrize("value", [1, "yes", None])
def test_validate_args_must_be_a_bool(value):
  with pytest.raises(TypeError, match=rf"^Flow: validate_args must be True or False, got "
                                      rf"{re.escape(repr(value))}\.$"):
    lf.build_flow(SHAPE, validate_args=value, **TINY)


# --- evaluation and export -------------------------------------------------------------------
def test_reconstruction_error_of_an_overflowing_flow_is_nan_with_and_without(flows, digits):
  """`evaluation.reconstruction_error` reports a round trip through non-finite latents as NaN
  (as before validate_args existed) rather than letting a validating `decode` refuse it."""
  for flow in flows:
    copy = flow.astype("float32")
    copy.actnorms[0].log_scale.assign(tf.fill(copy.actnorms[0].log_scale.shape, 200.0))
    x = next(iter(data.make_eval_pipeline(digits.test().take(4), 4, digits.num_bins, 0)))
    assert not np.all(np.isfinite(copy.encode(x).numpy()))
    error = evaluation.reconstruction_error(copy, digits.test(), digits.num_bins, 4)
    assert math.isnan(error), (copy.validate_args, error)
  finite = [evaluation.reconstruction_error(f, digits.test(), digits.num_bins, 4) for f in flows]
  assert finite[0] == finite[1] < 1e-4



def session_run(path, calls):
  """Runs [(signature, {input: array})] with the TF1 session loader; outputs or exceptions."""
  results = []
  with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as sess:
    meta = tf.compat.v1.saved_model.loader.load(sess, ["serve"], path)
    for name, feeds in calls:
      signature = meta.signature_def[name]
      try:
        results.append(sess.run({k: t.name for k, t in signature.outputs.items()},
                                {signature.inputs[k].name: v for k, v in feeds.items()}))
      except tf.errors.OpError as e:
        results.append(e)
  return results


def test_a_checked_flow_exports_and_every_loader_runs_it(flows, tmp_path):
  """The export of a validating flow gives the plain flow's outputs with `tf.saved_model.load`
  and the session loader, and refuses a NaN latent in `decode` with the flow's message."""
  plain, checked = flows
  images = np.random.default_rng(6).integers(0, NUM_BINS, (3,) + SHAPE).astype(np.uint8)
  latent = np.random.default_rng(7).normal(size=(3,) + SHAPE).astype(np.float32)
  bad_latent = latent.copy()
  bad_latent[2, 1, 1, 0] = np.nan
  paths = [export.export_saved_model(f, str(tmp_path / name), NUM_BINS)
           for f, name in ((plain, "plain"), (checked, "checked"))]
  calls = [("log_prob", {"images": images}), ("encode", {"images": images}),
           ("decode", {"latent": latent}), ("decode", {"latent": bad_latent})]
  expected = session_run(paths[0], calls)
  assert np.all(np.isfinite(expected[0]["log_prob"]))
  got = session_run(paths[1], calls)
  for want, have in zip(expected[:3], got[:3]):
    assert set(want) == set(have)
    for key in want:
      np.testing.assert_array_equal(have[key], want[key])
  assert isinstance(got[3], tf.errors.InvalidArgumentError)
  assert re.search(rf"Flow\.decode: {LATENTS_RULE}; got 1 non-finite", got[3].message)
  assert isinstance(expected[3], dict)  # the plain export decodes NaN silently
  loaded = tf.saved_model.load(paths[1])
  np.testing.assert_array_equal(loaded.signatures["log_prob"](images=images)["log_prob"],
                                expected[0]["log_prob"])
  with pytest.raises(tf.errors.InvalidArgumentError, match=rf"Flow\.decode: {LATENTS_RULE}"):
    loaded.signatures["decode"](latent=bad_latent)
