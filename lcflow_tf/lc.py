"""Likelihood contributions and the data-dependent split (LCMA, arXiv 1908.01686).

This module is "the paper" in lcflow_tf. Its words:
  * junction: the place at the end of a level where half of the channels leave the flow (they
    go to the latent) and the other half continue through the deeper levels; the bijector at a
    junction is `lcflow_tf.bijectors.FactorOut` (`Flow.junctions`, outermost first; in a
    `nosplit` pilot's flow, `OpenJunction`s, where nothing leaves);
  * split rule, or split (`SPLITS`, `FlowConfig.split`): the rule that chooses, at every
    junction, which half stays; fixing the split sets the channel order it chooses.
The pilots that collect the statistics a data-dependent split is fixed from are a training
protocol: `lcflow_tf.pilots`.

A flow maps an image x to a latent z with
log p(x) = sum_d [log N(z_d; 0, 1) + A_d], where A is the per-element log-det map that every
bijector of `lcflow_tf.bijectors` reports and that is carried from the image to the latent
(`lcflow_tf.bijectors.inverse_with_log_det_map`):
  * couplings add log|scale| on the transformed elements, 0 on the conditioning ones;
  * ActNorm adds log_scale[c] on channel c;
  * squeezes and permutations move A exactly like the data;
  * an invertible 1x1 convolution has only a per-location log|det W|: it is spread evenly over
    the location's C channels (each element gets log|det W| / C), keeping the location's total;
  * the learned split prior adds -log sigma on the factored elements.

At junction l, for every element d of the tensor h_l [H_l, W_l, C_l] reaching it, the
likelihood contribution (ranking score) is
    LC_l[d] = log N(h_l[d]; 0, 1) + A_l[d].
`LCStatistics` keeps its running mean (and the mean and mean square of h_l, for the variance
rule) in non-trainable variables, updated from the training step's own pass.

Split rules (`SPLITS`), each a per-location channel permutation applied before the junction
keeps the first C_l / 2 channels:
  * `static`: identity (RealNVP/Glow channel halves);
  * `random`: a fixed random permutation per location (seeded);
  * `lc`: channels with the highest mean LC stay, the rest are factored out;
  * `lc_reverse`: the lowest mean LC stay;
  * `logdet`: channels with the highest mean carried log-det map A stay (the reading of the
    Kobyzev et al. survey, arXiv 1908.09257 sec. 3.4.1: "the features at which the Jacobian
    is higher are propagated further");
  * `logdet_reverse`: the lowest mean A stay;
  * `variance`: the highest data variance (of h_l) stays.
The data-dependent rules (`DATA_DEPENDENT_SPLITS`) rank by statistics, so they are fixed
after training has collected some (`fix_split`); `static` and `random` are fixed from the
start. A at junction l is the log-det accumulated per element from the input image up to the
junction (the map the bijectors above carry, in the coordinates of h_l), so at a deeper
junction it includes every level above. Its mean is derived from the statistics that are kept
anyway: mean A = mean LC + 0.5 * mean h^2 + 0.5 * log(2 pi) (`LCStatistics.mean_log_det`).
Statistics are recorded before the junction's permutation, so they do not change meaning
when the split is fixed, and fixing twice gives the same permutation.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from lcflow_tf import checks

SPLITS = ("static", "random", "lc", "lc_reverse", "logdet", "logdet_reverse", "variance")
DATA_DEPENDENT_SPLITS = ("lc", "lc_reverse", "logdet", "logdet_reverse", "variance")
REVERSE_SPLITS = ("lc_reverse", "logdet_reverse")  # the lowest score stays
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def standard_normal_log_prob(t):
  """log N(t; 0, 1), elementwise (the base density of every flow, and the LC's first term)."""
  return -0.5 * tf.square(t) - 0.5 * math.log(2.0 * math.pi)


class SplitRecorder:
  """Collects, during one pass, what the junctions report (see `inverse_with_log_det_map`).

  The recorder protocol of the junction bijectors: `at_junction` (the tensor reaching a
  junction and its carried map), `leaving` (the elements that leave there) and `reached_top`.
  """

  def __init__(self):
    self.scores = []          # LC score maps at each junction, outer first
    self.inputs = []          # the tensors reaching the junctions
    self.factored_terms = []  # log N(z_out) + A_out of the elements that leave
    self.kept = []            # log N(z) + A of each junction's kept part, innermost first

  def at_junction(self, junction, h, a):
    del junction
    self.inputs.append(h)
    self.scores.append(standard_normal_log_prob(h) + a)

  def leaving(self, junction, z, a):
    del junction
    self.factored_terms.append(standard_normal_log_prob(z) + a)

  def reached_top(self, junction, z, a):
    del junction
    self.kept.append(standard_normal_log_prob(z) + a)

  def batch_sums(self):
    """Per junction: (sum of LC, sum of h, sum of h^2) over the batch, and the batch size."""
    sums = []
    for score, h in zip(self.scores, self.inputs):
      axes = list(range(score.shape.rank - 3))
      n = tf.cast(tf.reduce_prod(tf.shape(score)[:-3]), score.dtype)
      sums.append((tf.reduce_sum(score, axes), tf.reduce_sum(h, axes),
                   tf.reduce_sum(tf.square(h), axes), n))
    return sums


class LCStatistics(tf.Module):
  """Running means of the LC score, h and h^2 at every junction (non-trainable variables).

  `decay=None` keeps the exact mean over every image seen; a float in (0, 1) keeps an
  exponential moving average (`mean <- decay * mean + (1 - decay) * batch_mean`) instead.
  Under `tf.distribute`, sum the replicas' `batch_sums` (e.g. `strategy.reduce(SUM)`) and
  call `update` in cross-replica context: the result equals one device on the global batch.

  Args:
    event_shapes: (H_l, W_l, C_l) of each junction's input, outermost first.
    decay: None or a float in (0, 1).
    dtype: dtype of the statistics.
  """

  def __init__(self, event_shapes, decay=None, dtype=tf.float32, name="lc_statistics"):
    super().__init__(name=name)
    if decay is not None:
      checks.check_number("decay", decay, 0, 1, high_open=True, caller="LCStatistics")
    self.event_shapes = [tuple(s) for s in event_shapes]
    self.decay = decay
    with self.name_scope:
      self.mean_lc = [tf.Variable(tf.zeros(s, dtype), trainable=False, name=f"mean_lc_{i}")
                      for i, s in enumerate(self.event_shapes)]
      self.mean_h = [tf.Variable(tf.zeros(s, dtype), trainable=False, name=f"mean_h_{i}")
                     for i, s in enumerate(self.event_shapes)]
      self.mean_h2 = [tf.Variable(tf.zeros(s, dtype), trainable=False, name=f"mean_h2_{i}")
                      for i, s in enumerate(self.event_shapes)]
      self.count = tf.Variable(tf.zeros([], tf.float64), trainable=False, name="count")

  def update(self, batch_sums):
    """Folds one (global) batch into the running means; returns the update op."""
    if len(batch_sums) != len(self.event_shapes):
      raise ValueError(f"LCStatistics.update: got statistics for {len(batch_sums)} junctions, "
                       f"the model has {len(self.event_shapes)}.")
    ops = []
    n = batch_sums[0][3] if batch_sums else tf.constant(0.0)
    count = self.count
    new_count = count + tf.cast(n, tf.float64)
    if self.decay is None:
      weight = tf.cast(tf.cast(n, tf.float64) / tf.maximum(new_count, 1.0), self.mean_lc[0].dtype
                       if self.mean_lc else tf.float32)
    else:
      weight = tf.where(count > 0, 1.0 - self.decay, 1.0)
    for i, (s_lc, s_h, s_h2, n_i) in enumerate(batch_sums):
      if tuple(s_lc.shape) != self.event_shapes[i]:
        raise ValueError(f"LCStatistics.update: junction {i} statistics have shape "
                         f"{list(s_lc.shape)}, the model expects {list(self.event_shapes[i])}.")
      for var, total in ((self.mean_lc[i], s_lc), (self.mean_h[i], s_h), (self.mean_h2[i], s_h2)):
        w = tf.cast(weight, var.dtype)
        ops.append(var.assign(var + w * (total / tf.cast(n_i, var.dtype) - var)))
    with tf.control_dependencies(ops):
      return self.count.assign(new_count)

  def has_data(self):
    return bool(self.count.numpy() > 0)

  def reset(self):
    for var in self.mean_lc + self.mean_h + self.mean_h2:
      var.assign(tf.zeros_like(var))
    self.count.assign(0.0)

  def copy_junction(self, other, i):
    """Takes junction `i`'s means, and the image count, from the `LCStatistics` `other`.

    E.g. the statistics a junction's order was fixed from, collected by another flow of the
    same shapes up to junction `i` (a `nosplit` pilot, `lcflow_tf.pilots`).
    """
    if tuple(other.event_shapes[i]) != self.event_shapes[i]:
      raise ValueError(f"LCStatistics.copy_junction: junction {i} has shape "
                       f"{list(self.event_shapes[i])}, the other statistics "
                       f"{list(other.event_shapes[i])}.")
    for mine, theirs in ((self.mean_lc, other.mean_lc), (self.mean_h, other.mean_h),
                         (self.mean_h2, other.mean_h2)):
      mine[i].assign(theirs[i])
    self.count.assign(other.count)

  def variance(self, i):
    return self.mean_h2[i] - tf.square(self.mean_h[i])

  def mean_log_det(self, i):
    """Mean carried log-det map A at junction `i`: mean LC + 0.5 mean h^2 + 0.5 log(2 pi).

    Exact, since LC = log N(h; 0, 1) + A elementwise and every statistic averages the same
    images with the same weights.
    """
    return self.mean_lc[i] + 0.5 * self.mean_h2[i] + tf.constant(_HALF_LOG_2PI,
                                                                 self.mean_lc[i].dtype)


@dataclasses.dataclass(frozen=True)
class LikelihoodContributions:
  """What `likelihood_contributions` returns (all tensors, batch first).

  Attributes:
    scores: per junction, the LC score map [B, H_l, W_l, C_l] of the elements reaching it.
    factored_terms: per junction, [B, H_l, W_l, C_l / 2], log N(z) + A of the elements that
      leave there (after the junction's permutation and prior).
    top_terms: log N(z) + A of the elements that reach the top (the last level's output).
    log_prob: [B], equal to the sum of all factored and top terms.
  """
  scores: list
  factored_terms: list
  top_terms: tf.Tensor
  log_prob: tf.Tensor


def likelihood_contributions(recorder, z, a):
  """Per-element decomposition of log p(x) and the LC maps at every junction (`Flow`'s pass).

  Args:
    recorder: the `SplitRecorder` of the pass that encoded x.
    z: the latent of that pass.
    a: the per-element log-det map of that pass.

  Returns:
    `LikelihoodContributions`.
  """
  terms = standard_normal_log_prob(z) + a
  top = recorder.kept[0] if recorder.kept else terms  # innermost junction's kept part
  return LikelihoodContributions(scores=recorder.scores, factored_terms=recorder.factored_terms,
                                 top_terms=top,
                                 log_prob=tf.reduce_sum(terms, axis=[-3, -2, -1]))


def split_permutation(score, rule):
  """Per-location channel order [H, W, C]: the first C/2 channels stay.

  Highest score first (ties: the lower channel first); a reverse rule takes the same order
  backwards, so it keeps exactly the half that its forward rule factors out, ties included.
  """
  order = np.argsort(-np.asarray(score), axis=-1, kind="stable")
  return order[..., ::-1] if rule in REVERSE_SPLITS else order


def fix_split(junctions, statistics, rule, seed=0, split_fixed=None):
  """Sets every junction's permutation from the statistics (eager).

  Args:
    junctions: the `FactorOut` bijectors, outermost first (`Flow.junctions`).
    statistics: their `LCStatistics` (`Flow.lc_statistics`).
    rule: one of `SPLITS`.
    seed: the seed of the `random` rule.
    split_fixed: optional boolean variable (`Flow.split_fixed`), set to True.

  Returns:
    The list of permutations [H_l, W_l, C_l] that were set, outermost first.

  Raises:
    ValueError: for an unknown rule, or a data-dependent rule before any statistics were
      collected, or statistics whose shapes do not match the junctions.
  """
  checks.check_choice("rule", rule, SPLITS, caller="fix_split")
  if rule in DATA_DEPENDENT_SPLITS and not statistics.has_data():
    raise ValueError(f"fix_split: split rule {rule!r} needs likelihood-contribution statistics, "
                     "but none were collected yet; train with statistics collection first "
                     "(e.g. lc_pilot_steps > 0).")
  if rule == "random":
    chosen = random_split(junctions, seed)
  else:
    chosen = [_set_order(junction, i, statistics, rule) for i, junction in enumerate(junctions)]
  if split_fixed is not None:
    split_fixed.assign(True)
  return chosen


def _set_order(junction, i, statistics, rule):
  shape = junction.event_shape
  if tuple(statistics.event_shapes[i]) != tuple(shape):
    raise ValueError(f"fix_split: statistics of junction {i} have shape "
                     f"{list(statistics.event_shapes[i])}, the junction expects {list(shape)}.")
  order = split_order(statistics, i, rule)
  junction.permutation.set_indices(order)
  return order


def split_score(statistics, i, rule):
  """The mean score [H, W, C] that `rule` ranks the channels of junction `i` by (numpy).

  `lc`/`lc_reverse`: mean LC; `logdet`/`logdet_reverse`: mean A; `variance`: the variance of
  h. Raises ValueError for the rules that have no score (`static`, `random`).
  """
  if rule in ("lc", "lc_reverse"):
    return statistics.mean_lc[i].numpy()
  if rule in ("logdet", "logdet_reverse"):
    return statistics.mean_log_det(i).numpy()
  if rule == "variance":
    return statistics.variance(i).numpy()
  raise ValueError(f"split_score: rule must be one of {DATA_DEPENDENT_SPLITS}, got {rule!r}.")


def split_order(statistics, i, rule):
  """The channel order [H_i, W_i, C_i] that `rule` gives junction `i` from `statistics`.

  The first C_i / 2 channels of each location stay. `static` gives the identity.
  """
  shape = tuple(statistics.event_shapes[i])
  if rule == "static":
    return np.broadcast_to(np.arange(shape[-1]), shape).copy()
  return np.asarray(split_permutation(split_score(statistics, i, rule), rule))


def set_split(junctions, orders, split_fixed=None):
  """Sets the given channel orders on the first `len(orders)` junctions (eager).

  E.g. orders fixed one junction at a time (the `nosplit` pilots of `lcflow_tf.pilots`).

  Args:
    junctions: the `FactorOut` bijectors, outermost first.
    orders: channel orders [H_l, W_l, C_l], outermost first (at most one per junction).
    split_fixed: optional boolean variable, set to True.

  Raises:
    ValueError: more orders than junctions, or an order of the wrong shape.
  """
  if len(orders) > len(junctions):
    raise ValueError(f"set_split: got {len(orders)} orders for {len(junctions)} junctions.")
  for i, (junction, order) in enumerate(zip(junctions, orders)):
    if tuple(np.shape(order)) != tuple(junction.event_shape):
      raise ValueError(f"set_split: order {i} has shape {list(np.shape(order))}, junction {i} "
                       f"expects {list(junction.event_shape)}.")
    junction.permutation.set_indices(np.asarray(order))
  if split_fixed is not None:
    split_fixed.assign(True)


def random_split(junctions, seed):
  """Sets a seeded random channel permutation at every location of every junction.

  Returns:
    The permutations [H_l, W_l, C_l] that were set, outermost first.
  """
  chosen = []
  for i, junction in enumerate(junctions):
    rng = np.random.default_rng([seed, i])
    shape = junction.event_shape
    order = rng.permuted(np.broadcast_to(np.arange(shape[-1]), shape).copy(), axis=-1)
    junction.permutation.set_indices(order)
    chosen.append(order)
  return chosen


def keep_mask(order):
  """1.0 where a channel stays and 0.0 where it leaves, for a channel order [H, W, C].

  `order` is a junction's permutation (e.g. from `split_permutation`): its first C/2
  channels at each location stay.
  """
  order = np.asarray(order)
  mask = np.zeros(order.shape, np.float32)
  np.put_along_axis(mask, order[..., : order.shape[-1] // 2], 1.0, axis=-1)
  return mask


def keep_masks(junctions):
  """Per junction, 1.0 where the channel stays and 0.0 where it is factored out, [H_l, W_l, C_l].

  Args:
    junctions: the `FactorOut` bijectors, outermost first (`Flow.junctions`).
  """
  return [keep_mask(junction.permutation.indices.numpy()) for junction in junctions]


def to_image_coordinates(junctions, level, values):
  """Maps a junction-`level` map [H_l, W_l, C_l] back to image coordinates [H, W, C].

  `junctions` are the flow's `FactorOut` bijectors, outermost first (`Flow.junctions`).

  Undoes the squeezes (depth-to-space) and, above the level, scatters each level's kept
  channels back to where the upstream junction's permutation took them from; positions
  factored out upstream (never reaching `level`) are NaN. Exact for the element layout;
  note that 1x1 convolutions and couplings mix values across the channels of a location, so
  a channel's image position is its place in the squeeze, not a single pixel's value.
  """
  values = np.asarray(values, np.float64)
  for l in range(level, -1, -1):
    values = _depth_to_space(values)
    if l == 0:
      return values
    order = junctions[l - 1].permutation.indices.numpy()
    full = np.full(order.shape, np.nan)
    c = order.shape[-1]
    np.put_along_axis(full, order[..., : c // 2], values, axis=-1)
    values = full
  return values


def _depth_to_space(t):
  h, w, c = t.shape
  t = t.reshape(h, w, 2, 2, c // 4).transpose(0, 2, 1, 3, 4)
  return t.reshape(2 * h, 2 * w, c // 4)
