"""Likelihood contributions: exactness, statistics, the data-dependent split (issue 3)."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import lcflow_tf as lf
from lcflow_tf import lc

SMALL = dict(levels=2, steps_per_level=2, hidden_channels=8)


def digits(n=32, dtype=np.float32, seed=0):
  rng = np.random.default_rng(seed)
  k = load_digits().images[:n].reshape(-1, 8, 8, 1)
  return ((k + rng.random(k.shape)) / 17.0).astype(dtype)


def perturb(flow, scale=0.05, seed=1):
  """Random non-zero weights everywhere (zero-initialised layers included)."""
  rng = np.random.default_rng(seed)
  for v in flow.trainable_variables:
    noise = rng.standard_normal(tuple(v.shape)).astype(tf.as_dtype(v.dtype).as_numpy_dtype)
    v.assign(v + scale * noise)


def total_of_terms(result):
  total = tf.reduce_sum(result.top_terms, [1, 2, 3])
  for t in result.factored_terms:
    total += tf.reduce_sum(t, [1, 2, 3])
  return total


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-5), ("float32", 1e-4)])
def test_terms_sum_to_log_prob_random_weights(architecture, dtype, rtol):
  flow = lf.build_flow((8, 8, 1), architecture=architecture, dtype=dtype, **SMALL)
  x = digits(dtype=np.dtype(dtype))
  flow.initialize(x)
  perturb(flow)
  result = flow.likelihood_contributions(x)
  reference = flow.distribution.log_prob(x)  # TFP's own path: base log_prob + ildj
  np.testing.assert_allclose(total_of_terms(result), reference, rtol=rtol)
  np.testing.assert_allclose(result.log_prob, reference, rtol=rtol)
  assert [tuple(s.shape[1:]) for s in result.scores] == [j.event_shape for j in flow.junctions]
  assert [tuple(t.shape[1:]) for t in result.factored_terms] == [
      j.event_shape[:2] + (j.event_shape[2] // 2,) for j in flow.junctions]


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_terms_sum_to_log_prob_after_training(architecture):
  flow = lf.build_flow((8, 8, 1), architecture=architecture, dtype="float64", **SMALL)
  x = digits(64, np.float64)
  flow.initialize(x)
  import keras  # pylint: disable=g-import-not-at-top
  opt = keras.optimizers.Adam(1e-2)
  variables = flow.trainable_variables
  for _ in range(5):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_mean(flow.log_prob(x))
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
  result = flow.likelihood_contributions(x[:8])
  np.testing.assert_allclose(total_of_terms(result), flow.distribution.log_prob(x[:8]), rtol=1e-5)


def test_scores_match_definition_at_first_split():
  """LC_0 = log N(h_0) + A_0, with h_0 computed by running the first level's steps by hand."""
  flow = lf.build_flow((8, 8, 1), architecture="glow", dtype="float64", **SMALL)
  x = digits(8, np.float64)
  flow.initialize(x)
  perturb(flow)
  level0 = flow.bijector.bijectors
  h, a = x, tf.zeros_like(x)
  for b in level0[:-2]:  # squeeze and the steps, up to the junction
    h, a = lf.bijectors.inverse_with_log_det_map(b, h, a)
  expected = -0.5 * h ** 2 - 0.5 * np.log(2 * np.pi) + a
  np.testing.assert_allclose(flow.likelihood_contributions(x).scores[0], expected, rtol=1e-10)


def constructed_images(n, seed=0):
  """8x8 images whose even rows are always 0 and odd rows uniform in 0..16."""
  rng = np.random.default_rng(seed)
  k = rng.integers(0, 17, size=(n, 8, 8, 1))
  k[:, ::2] = 0
  return ((k + rng.random(k.shape)) / 17.0).astype(np.float32)


def train_collecting(flow, x, steps=20):
  """Adam steps on 64-image batches of `x`, folding each step's LC sums into the statistics.

  The step is a `tf.function`, traced once: the same updates as eager steps, in half the time
  (the module fixture: 40 s eager, 21 s traced, at nice 19 on two busy cores)."""
  import keras  # pylint: disable=g-import-not-at-top
  flow.initialize(x)
  opt = keras.optimizers.Adam(1e-3)
  variables = flow.trainable_variables
  opt.build(variables)

  @tf.function
  def step(batch):
    with tf.GradientTape() as tape:
      log_prob, sums = flow.log_prob_and_lc_batch(batch)
      loss = -tf.reduce_mean(log_prob)
    opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return sums

  for i in range(steps):
    flow.lc_statistics.update(step(tf.constant(x[(i % 4) * 64:(i % 4 + 1) * 64])))


KNOWN_ANSWERS = [("lc", 0), ("lc_reverse", 1), ("logdet", 0), ("logdet_reverse", 1)]


@pytest.fixture(scope="module")
def constructed_statistics():
  """Statistics of 20 training steps on `constructed_images`: RealNVP under the static split
  (the static pilot), and the nosplit pilot flow of junction 0 (nothing factored out)."""
  x = constructed_images(256)
  static = lf.build_flow((8, 8, 1), architecture="realnvp", split="lc", **SMALL)
  train_collecting(static, x)
  pilot = lf.build_flow((8, 8, 1), architecture="realnvp", open_junctions_from=0, **SMALL)
  train_collecting(pilot, x)
  return static, pilot


def kept_image_rows(flow, kept_rows):
  mask = lc.to_image_coordinates(flow.junctions, 0, lc.keep_masks(flow.junctions)[0])[..., 0]
  # The squeeze puts image rows 2i (dy=0) in channels 0,1 and rows 2i+1 in channels 2,3.
  np.testing.assert_array_equal(mask[kept_rows::2], 1.0)
  np.testing.assert_array_equal(mask[1 - kept_rows::2], 0.0)


@pytest.mark.parametrize("rule,kept_rows", KNOWN_ANSWERS)
def test_known_answer_split(constructed_statistics, rule, kept_rows):
  """Constant pixels carry the higher likelihood contribution and the higher log-det (ActNorm
  scales their tiny spread up); lc and logdet keep them, their reverses not."""
  flow, _ = constructed_statistics
  flow.fix_split(rule)
  kept_image_rows(flow, kept_rows)
  mean_a = flow.lc_statistics.mean_log_det(0).numpy()  # A itself: larger on those channels
  assert mean_a[..., :2].min() > mean_a[..., 2:].max()


@pytest.mark.parametrize("rule,kept_rows", KNOWN_ANSWERS)
def test_known_answer_split_from_nosplit_pilot(constructed_statistics, rule, kept_rows):
  """The same answer from the statistics of a nosplit pilot (junction 0 factors nothing out),
  set on the model with `set_split`."""
  _, pilot = constructed_statistics
  assert [type(j).__name__ for j in pilot.junctions] == ["OpenJunction"]
  model = lf.build_flow((8, 8, 1), architecture="realnvp", split=rule, **SMALL)
  lc.set_split(model.junctions, [lc.split_order(pilot.lc_statistics, 0, rule)],
               model.split_fixed)
  assert bool(model.split_fixed.numpy())
  kept_image_rows(model, kept_rows)


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
def test_mean_log_det_is_the_mean_carried_map(architecture):
  """mean A derived from the statistics == the mean of A = LC - log N(h) recorded directly,
  at the first junction and at the deeper one (A accumulated from the image)."""
  flow = lf.build_flow((8, 8, 1), architecture=architecture, levels=3, steps_per_level=1,
                       hidden_channels=8, dtype="float64")
  x = digits(48, np.float64)
  flow.initialize(x)
  perturb(flow)
  for i in range(3):
    flow.lc_statistics.update(flow.log_prob_and_lc_batch(x[i * 16:(i + 1) * 16])[1])
  recorder = lc.SplitRecorder()
  flow.encode_with_log_det_map(x, recorder=recorder)
  for j, (score, h) in enumerate(zip(recorder.scores, recorder.inputs)):
    direct = tf.reduce_mean(score - lc.standard_normal_log_prob(h), 0)
    np.testing.assert_allclose(flow.lc_statistics.mean_log_det(j), direct, rtol=1e-9,
                               atol=1e-9)


def test_logdet_and_logdet_reverse_are_opposite_halves():
  flow = lf.build_flow((8, 8, 1), architecture="glow", split="logdet", levels=3,
                       steps_per_level=1, hidden_channels=8)
  _, sums = flow.log_prob_and_lc_batch(digits(64))
  flow.lc_statistics.update(sums)
  flow.fix_split()
  keep = lc.keep_masks(flow.junctions)
  flow.fix_split("logdet_reverse")
  for a, b in zip(keep, lc.keep_masks(flow.junctions)):
    np.testing.assert_array_equal(a + b, np.ones_like(a))


@pytest.mark.parametrize("rule", ["lc", "logdet"])
def test_a_reverse_rule_keeps_exactly_the_complement_even_with_ties(rule):
  score = np.array([[[1.0, 3.0, 3.0, 1.0, 2.0, 2.0]], [[0.0] * 6]])  # [H=2, W=1, C=6]
  forward = lc.split_permutation(score, rule)
  reverse = lc.split_permutation(score, rule + "_reverse")
  np.testing.assert_array_equal(forward[0, 0, :3], [1, 2, 4])  # ties: the lower channel first
  for a, b in zip(forward.reshape(-1, 6), reverse.reshape(-1, 6)):
    assert set(a[:3]) | set(b[:3]) == set(range(6)) and not set(a[:3]) & set(b[:3])


@pytest.mark.parametrize("architecture", ["glow", "realnvp"])
@pytest.mark.parametrize("open_from", [0, 1])
def test_nosplit_pilot_flow_is_exact_and_factors_nothing_out_from_its_junction(
    architecture, open_from):
  """Pilot flow of junction j (L=3): junctions < j factor out, j and deeper pass every channel
  on (the deeper levels see twice the channels); still one exact bijector."""
  flow = lf.build_flow((8, 8, 1), architecture=architecture, levels=3, steps_per_level=1,
                       hidden_channels=8, dtype="float64", open_junctions_from=open_from)
  x = digits(8, np.float64)
  flow.initialize(x)
  perturb(flow)
  kinds = [type(j).__name__ for j in flow.junctions]
  assert kinds == ["FactorOut"] * open_from + ["OpenJunction"] * (2 - open_from)
  assert [type(j).__name__ for j in flow.astype("float32").junctions] == kinds  # carried
  assert [j.event_shape for j in flow.junctions] == [
      [(4, 4, 4), (2, 2, 16)], [(4, 4, 4), (2, 2, 8)]][open_from]
  result = flow.likelihood_contributions(x)
  assert [tuple(t.shape[1:]) for t in result.factored_terms] == [(4, 4, 2)] * open_from
  assert [tuple(s.shape[1:]) for s in result.scores] == [j.event_shape for j in flow.junctions]
  reference = flow.distribution.log_prob(x)
  np.testing.assert_allclose(total_of_terms(result), reference, rtol=1e-10)
  np.testing.assert_allclose(flow.decode(flow.encode(x)), x, atol=1e-10)


def test_copy_junction_takes_one_junctions_statistics_and_the_count():
  stats = lc.LCStatistics([(4, 4, 4), (2, 2, 8)])
  other = lc.LCStatistics([(4, 4, 4), (2, 2, 16)])  # a pilot's: junction 1 open
  for i, shape in enumerate(other.event_shapes):
    for variable, value in ((other.mean_lc[i], 1.0), (other.mean_h[i], 2.0),
                            (other.mean_h2[i], 3.0)):
      variable.assign(np.full(shape, value + i, np.float32))
  other.count.assign(48.0)
  stats.copy_junction(other, 0)
  for variable, value in ((stats.mean_lc, 1.0), (stats.mean_h, 2.0), (stats.mean_h2, 3.0)):
    np.testing.assert_array_equal(variable[0].numpy(), np.full((4, 4, 4), value))
    np.testing.assert_array_equal(variable[1].numpy(), np.zeros((2, 2, 8)))  # untouched
  assert float(stats.count.numpy()) == 48.0
  with pytest.raises(ValueError, match=r"junction 1 has shape \[2, 2, 8\], the other "
                     r"statistics \[2, 2, 16\]"):
    stats.copy_junction(other, 1)


def test_set_split_checks_its_orders():
  flow = lf.build_flow((8, 8, 1), **SMALL)
  with pytest.raises(ValueError, match=r"order 0 has shape \[4, 4, 2\], junction 0 expects"):
    lc.set_split(flow.junctions, [np.zeros((4, 4, 2), np.int32)])
  with pytest.raises(ValueError, match=r"got 2 orders for 1 junctions"):
    lc.set_split(flow.junctions, [np.zeros((4, 4, 4), np.int32)] * 2)


def test_fix_split_is_idempotent_and_preserves_density_exactness():
  flow = lf.build_flow((8, 8, 1), architecture="glow", split="lc", dtype="float64", **SMALL)
  x = digits(32, np.float64)
  _, sums = flow.log_prob_and_lc_batch(x)
  flow.lc_statistics.update(sums)
  first = [p.copy() for p in flow.fix_split()]
  second = flow.fix_split()
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)
  assert bool(flow.split_fixed.numpy())
  assert any((p != np.arange(p.shape[-1])).any() for p in first)
  perturb(flow)
  z = flow.encode(x)
  np.testing.assert_allclose(flow.decode(z), x, atol=1e-10)
  np.testing.assert_allclose(total_of_terms(flow.likelihood_contributions(x)),
                             flow.distribution.log_prob(x), rtol=1e-5)


def test_variance_rule_keeps_highest_variance():
  flow = lf.build_flow((8, 8, 1), architecture="glow", split="variance", **SMALL)
  _, sums = flow.log_prob_and_lc_batch(digits(64))
  flow.lc_statistics.update(sums)
  flow.fix_split()
  var = flow.lc_statistics.variance(0).numpy()
  keep = lc.keep_masks(flow.junctions)[0].astype(bool)
  kept_min = np.where(keep, var, np.inf).min(-1)
  dropped_max = np.where(~keep, var, -np.inf).max(-1)
  assert (kept_min >= dropped_max).all()


def test_random_split_is_seeded_permutation():
  a = lf.build_flow((8, 8, 1), split="random", seed=3, **SMALL)
  b = lf.build_flow((8, 8, 1), split="random", seed=3, **SMALL)
  c = lf.build_flow((8, 8, 1), split="random", seed=4, **SMALL)
  pa, pb, pc = (j.junctions[0].permutation.indices.numpy() for j in (a, b, c))
  np.testing.assert_array_equal(pa, pb)
  assert (pa != pc).any()
  np.testing.assert_array_equal(np.sort(pa, -1), np.broadcast_to(np.arange(4), pa.shape))


def test_running_mean_equals_mean_over_all_images():
  flow = lf.build_flow((8, 8, 1), architecture="glow", dtype="float64", **SMALL)
  x = digits(48, np.float64)
  flow.initialize(x)
  for i in range(3):
    flow.lc_statistics.update(flow.log_prob_and_lc_batch(x[i * 16:(i + 1) * 16])[1])
  expected = tf.reduce_mean(flow.likelihood_contributions(x).scores[0], 0)
  np.testing.assert_allclose(flow.lc_statistics.mean_lc[0], expected, rtol=1e-10)
  assert flow.lc_statistics.count.numpy() == 48


def test_ema_statistics():
  stats = lc.LCStatistics([(1, 1, 2)], decay=0.5, dtype=tf.float64)
  ones = tf.ones([1, 1, 2], tf.float64)
  stats.update([(ones * 2, ones * 2, ones * 2, tf.constant(2.0, tf.float64))])  # mean 1
  stats.update([(ones * 6, ones * 6, ones * 6, tf.constant(2.0, tf.float64))])  # mean 3
  np.testing.assert_allclose(stats.mean_lc[0], 2.0 * np.ones([1, 1, 2]))


def test_statistics_mirrored_equal_single_device(two_cpus):
  x = digits(16)

  def run(strategy):
    with strategy.scope():
      flow = lf.build_flow((8, 8, 1), architecture="glow", split="lc", **SMALL)
      flow.initialize(x)

    @tf.function
    def step(batch):
      def replica_fn(b):
        return flow.log_prob_and_lc_batch(b)[1]
      per_replica = strategy.run(replica_fn, args=(batch,))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    dataset = tf.data.Dataset.from_tensor_slices(x).batch(16)
    for batch in strategy.experimental_distribute_dataset(dataset):
      flow.lc_statistics.update(step(batch))
    return flow

  one = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
  two = run(two_cpus)
  assert two.lc_statistics.count.numpy() == one.lc_statistics.count.numpy() == 16
  for a, b in zip(one.lc_statistics.mean_lc + one.lc_statistics.mean_h2,
                  two.lc_statistics.mean_lc + two.lc_statistics.mean_h2):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def _trained_lc_flow():
  flow = lf.build_flow((8, 8, 1), architecture="glow", split="lc", **SMALL)
  x = digits(32)
  _, sums = flow.log_prob_and_lc_batch(x)
  flow.lc_statistics.update(sums)
  flow.fix_split()
  return flow, x


def test_checkpoint_round_trip_keeps_split_and_statistics(tmp_path):
  flow, x = _trained_lc_flow()
  path = tf.train.Checkpoint(flow=flow).save(str(tmp_path / "ckpt"))
  fresh = lf.build_flow((8, 8, 1), architecture="glow", split="lc", **SMALL)
  tf.train.Checkpoint(flow=fresh).restore(path).assert_existing_objects_matched()
  for a, b in zip(flow.junctions, fresh.junctions):
    np.testing.assert_array_equal(a.permutation.indices.numpy(), b.permutation.indices.numpy())
  for a, b in zip(flow.lc_statistics.variables, fresh.lc_statistics.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert bool(fresh.split_fixed.numpy())
  np.testing.assert_array_equal(flow.log_prob(x).numpy(), fresh.log_prob(x).numpy())


def test_saved_model_round_trip_keeps_split_and_statistics(tmp_path):
  flow, _ = _trained_lc_flow()
  tf.saved_model.save(flow, str(tmp_path / "sm"))
  loaded = tf.saved_model.load(str(tmp_path / "sm"))
  for a, b in zip(flow.junctions, loaded.junctions):
    # A SavedModel restores tracked attributes by their attribute names.
    np.testing.assert_array_equal(  # pylint: disable=protected-access
        a.permutation.indices.numpy(), b._permutation.indices.numpy())
  stats, loaded_stats = flow.lc_statistics, loaded.lc_statistics
  for name in ("mean_lc", "mean_h", "mean_h2"):
    for a, b in zip(getattr(stats, name), getattr(loaded_stats, name)):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert loaded_stats.count.numpy() == stats.count.numpy() > 0
  assert bool(loaded.split_fixed.numpy())


def test_fix_split_before_statistics_is_an_error():
  flow = lf.build_flow((8, 8, 1), split="lc", **SMALL)
  with pytest.raises(ValueError, match="none were collected"):
    flow.fix_split()


def test_unknown_split_names():
  with pytest.raises(ValueError, match="split must be one of"):
    lf.build_flow((8, 8, 1), split="best", **SMALL)
  flow = lf.build_flow((8, 8, 1), **SMALL)
  with pytest.raises(ValueError, match="rule must be one of"):
    flow.fix_split("best")


def test_statistics_of_wrong_shape_are_an_error():
  flow = lf.build_flow((8, 8, 1), **SMALL)
  bad = tf.zeros([2, 2, 2])
  with pytest.raises(ValueError, match="expects"):
    flow.lc_statistics.update([(bad, bad, bad, tf.constant(1.0))])
  with pytest.raises(ValueError, match="junctions"):
    flow.lc_statistics.update([])


def test_to_image_coordinates_undoes_squeezes():
  flow = lf.build_flow((8, 8, 1), architecture="glow", levels=3, steps_per_level=1,
                       hidden_channels=4, split="random", seed=2)
  # Element-id maps: follow each image pixel through the squeezes and permutations.
  ids = np.arange(64, dtype=np.float64).reshape(1, 8, 8, 1)
  h = tf.constant(ids)
  for level, junction in enumerate(flow.junctions):
    h = tf.nn.space_to_depth(h, 2)
    back = lc.to_image_coordinates(flow.junctions, level, h[0].numpy())
    seen = ~np.isnan(back)
    np.testing.assert_array_equal(back[seen], ids[0][seen])
    assert seen.sum() == 64 // (2 ** level)
    h = tf.gather(h, junction.permutation.indices.numpy()[None], axis=-1, batch_dims=3)
    h = h[..., : h.shape[-1] // 2]
