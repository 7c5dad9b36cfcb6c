"""Weight averaging (lcflow_tf/averaging.py) on plain variables: the rule, swapping,
checkpoints and MirroredStrategy. The training loop's use of it is in test_training.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lcflow_tf import averaging


def expected_averages(start, sequence, decay):
  """The documented rule: a <- d a + (1 - d) w, d = min(decay, (1 + n) / (10 + n))."""
  average = np.array(start, np.float64)
  for n, w in enumerate(sequence):
    d = min(decay, (1 + n) / (10 + n))
    average = d * average + (1 - d) * np.asarray(w, np.float64)
  return average


def test_update_follows_the_warm_started_rule_past_the_cap():
  """decay 0.5: d_n = 0.1, 0.18, ... until (1 + n) / (10 + n) reaches 0.5 at n = 8."""
  plain = tf.Variable([1.0, -2.0])
  layer = keras.Variable(np.array([[3.0]], np.float32))  # a Keras 3 variable (networks)
  average = averaging.WeightAverage([plain, layer], 0.5)
  assert average.num_updates == 0
  np.testing.assert_array_equal(average.values[0].numpy(), [1.0, -2.0])  # starts at the values
  rng = np.random.default_rng(0)
  seen_plain, seen_layer = [], []
  for _ in range(12):
    plain.assign(rng.standard_normal(2).astype(np.float32))
    layer.assign(rng.standard_normal((1, 1)).astype(np.float32))
    seen_plain.append(plain.numpy())
    seen_layer.append(layer.numpy())
    average.update()
  assert average.num_updates == 12
  np.testing.assert_allclose(average.values[0].numpy(),
                             expected_averages([1.0, -2.0], seen_plain, 0.5), rtol=1e-5)
  np.testing.assert_allclose(average.values[1].numpy(),
                             expected_averages([[3.0]], seen_layer, 0.5), rtol=1e-5)
  assert float(average.current_decay()) == 0.5


def test_update_inside_tf_function_and_reset():
  v = tf.Variable(0.0)
  average = averaging.WeightAverage([v], 0.999)

  @tf.function
  def step():
    v.assign_add(1.0)
    average.update()

  for _ in range(3):
    step()
  np.testing.assert_allclose(average.values[0].numpy(), expected_averages(0.0, [1, 2, 3], 0.999),
                             rtol=1e-6)
  average.reset()
  assert average.num_updates == 0 and average.values[0].numpy() == 3.0


def test_swapped_restores_the_raw_weights_even_after_an_error():
  v = tf.Variable([1.0, 2.0])
  average = averaging.WeightAverage([v], 0.9)
  v.assign([5.0, 6.0])
  average.update()  # d = 0.1: average = 0.1 * [1, 2] + 0.9 * [5, 6]
  with average.swapped():
    np.testing.assert_allclose(v.numpy(), [4.6, 5.6], rtol=1e-6)
  np.testing.assert_array_equal(v.numpy(), [5.0, 6.0])
  with pytest.raises(RuntimeError, match="inside"):
    with average.swapped():
      raise RuntimeError("inside")
  np.testing.assert_array_equal(v.numpy(), [5.0, 6.0])
  average.copy_to_variables()
  np.testing.assert_allclose(v.numpy(), [4.6, 5.6], rtol=1e-6)


def test_state_checkpoints_without_the_averaged_variables(tmp_path):
  v = tf.Variable([1.0, 2.0])
  average = averaging.WeightAverage([v], 0.9)
  v.assign([3.0, 3.0])
  average.update()
  with_averages = tf.train.Checkpoint(model=tf.Module(), averages=average.state).write(
      str(tmp_path / "with"))
  without = tf.train.Checkpoint(v=v).write(str(tmp_path / "without"))
  names = [n for n, _ in tf.train.list_variables(with_averages)]
  assert sorted(n for n in names if n.startswith("averages/")) == [
      "averages/num_updates/.ATTRIBUTES/VARIABLE_VALUE",
      "averages/values/0/.ATTRIBUTES/VARIABLE_VALUE"]  # v itself is not in `state`
  assert averaging.in_checkpoint(with_averages) and not averaging.in_checkpoint(without)
  fresh = averaging.WeightAverage([tf.Variable([0.0, 0.0])], 0.9)
  tf.train.Checkpoint(averages=fresh.state).restore(with_averages).expect_partial()
  assert fresh.num_updates == 1
  np.testing.assert_array_equal(fresh.values[0].numpy(), average.values[0].numpy())


def test_mirrored_copies_update_alike(two_cpus):
  strategy = two_cpus
  with strategy.scope():
    v = tf.Variable([1.0, -1.0])
    average = averaging.WeightAverage([v], 0.99)

  @tf.function
  def step(delta):
    v.assign_add(delta)
    average.update()

  with strategy.scope():
    for k in range(4):
      step(tf.constant([float(k), 2.0]))
  copies = [c.numpy() for c in average.values[0].values]
  assert len(copies) == 2
  np.testing.assert_array_equal(copies[0], copies[1])
  seen = np.cumsum([[0.0, 2.0], [1.0, 2.0], [2.0, 2.0], [3.0, 2.0]], axis=0) + [1.0, -1.0]
  np.testing.assert_allclose(copies[0], expected_averages([1.0, -1.0], seen, 0.99), rtol=1e-6)
  assert average.num_updates == 4


@pytest.mark.parametrize("decay", [1.0, -0.1, True, "0.9"])
def test_bad_decay(decay):
  with pytest.raises(ValueError, match=r"decay must be (a finite number )?in \[0, 1\), got"):
    averaging.WeightAverage([tf.Variable(0.0)], decay)


def test_bad_weights_argument():
  averaging.check_weights("ema")
  with pytest.raises(ValueError, match=r"weights must be one of \['ema', 'raw'\], got 'best'"):
    averaging.check_weights("best")
