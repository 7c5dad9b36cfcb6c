"""The maximum-likelihood training step, shared by `training.Trainer` and `FlowModel`.

One step on a batch of dequantised images x in [0, 1), in two halves:

* `StepEngine.replica_step` (replica context, once per replica on its slice of the global
  batch): `loss = sum(-log p(x)) / global_batch_size` and its gradient with respect to every
  trainable variable of the flow, with the LC batch sums of the same pass when asked for
  (`Flow.log_prob_and_lc_batch`); loss, gradients and sums are summed over the replicas in
  one all-reduce, so they equal the global batch's mean loss and gradient on one device. Then
  the gradients' global norm, whether loss and norm are finite, and the gradients clipped to
  `grad_clip_norm` by that norm.
* `StepEngine.apply` (cross-replica context): when the step is finite, the optimizer's update
  through its public `apply` (so a Keras optimizer's own features take part, e.g. its weight
  average `use_ema`), then the `averaging.WeightAverage`, if any, then the LC statistics; a
  non-finite step changes nothing (`tf.cond`, in cross-replica context as Keras'
  `LossScaleOptimizer` does it). Keras' `apply` runs per replica and sums the replicas'
  gradients again, so each replica hands it 1/R of the reduced gradient (exact for R a power
  of two, within a rounding otherwise); Keras' own `clipnorm`/`global_clipnorm` would clip
  those shares, so the engine clips the reduced gradient itself (`grad_clip_norm`).

The reduced loss, norm and sums are the same on every replica, so `first_replica` takes the
first replica's copy for the cross-replica half; with no distribution strategy both halves
run on plain tensors. `Trainer` calls the halves around `strategy.run`; `FlowModel.train_step`,
which Keras runs in replica context, reaches the second half through `merge_call`.
"""

import tensorflow as tf

from lcflow_tf import checks


def first_replica(values):
  """The first local replica's copy of every (possibly distributed) value of `values`."""
  strategy = tf.distribute.get_strategy()
  return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], values)


class StepEngine:
  """The two halves of a training step of `flow` (see the module docstring).

  Args:
    flow: the `Flow` being trained.
    optimizer: a built Keras optimizer over `variables`.
    variables: the trainable variables, default `flow.trainable_variables`.
    grad_clip_norm: clip the gradients to this global norm (None: no clipping).
    global_batch_size: images per global batch; None: the replica's batch size times the
      number of replicas in sync (the replicas' slices must then be equal).
    averages: an `averaging.WeightAverage` updated after each applied update, or None.
    jit: XLA-compile the loss-and-gradient computation.

  Raises:
    ValueError: for a `grad_clip_norm` that is not None or a number > 0, or a
      `global_batch_size` that is not None or an integer >= 1.
  """

  def __init__(self, flow, optimizer, variables=None, grad_clip_norm=None,
               global_batch_size=None, averages=None, jit=False):
    if grad_clip_norm is not None:
      checks.check_number("grad_clip_norm", grad_clip_norm, 0.0, caller="StepEngine")
    if global_batch_size is not None:
      checks.check_int("global_batch_size", global_batch_size, 1, caller="StepEngine")
    self.flow = flow
    self.optimizer = optimizer
    self.variables = tuple(flow.trainable_variables if variables is None else variables)
    self.grad_clip_norm = grad_clip_norm
    self.global_batch_size = global_batch_size
    self.averages = averages
    self._compute = (tf.function(self._loss_and_grads, jit_compile=True, autograph=False)
                     if jit else self._loss_and_grads)

  def _loss_and_grads(self, x, collect):
    if self.global_batch_size is None:
      replicas = tf.distribute.get_strategy().num_replicas_in_sync
      batch = tf.cast(tf.shape(x)[0] * replicas, self.flow.dtype)
    else:
      batch = tf.constant(float(self.global_batch_size), self.flow.dtype)
    with tf.GradientTape() as tape:
      if collect:
        log_prob, sums = self.flow.log_prob_and_lc_batch(x)
      else:
        log_prob, sums = self.flow.log_prob(x), None
      loss = tf.reduce_sum(-log_prob) / batch
    grads = tape.gradient(loss, self.variables)
    grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)]
    return loss, grads, sums

  def replica_step(self, x, collect):
    """The replica half: (loss, gradients, norm, finite, LC sums), all over the global batch.

    Args:
      x: this replica's dequantised images [b, H, W, C].
      collect: whether to return the LC batch sums (a Python bool; else `sums` is None).

    Returns:
      loss: the global batch's mean of -log p(x) in nats per image (the same on every
        replica).
      grads: its gradient per variable of `variables`, clipped to `grad_clip_norm`.
      norm: the global norm of the gradient before clipping.
      finite: whether loss and norm are finite.
      sums: the LC batch sums of the global batch (`SplitRecorder.batch_sums` summed over
        the replicas), or None.
    """
    loss, grads, sums = self._compute(x, collect)
    flat_sums = tf.nest.flatten(sums) if collect else []
    context = tf.distribute.get_replica_context()
    reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [loss] + grads + flat_sums)
    loss, grads = reduced[0], reduced[1:1 + len(grads)]
    sums = (tf.nest.pack_sequence_as(sums, reduced[1 + len(grads):]) if collect else None)
    norm = tf.linalg.global_norm(grads)
    finite = tf.logical_and(tf.math.is_finite(loss), tf.math.is_finite(norm))
    if self.grad_clip_norm is not None:
      grads, _ = tf.clip_by_global_norm(grads, self.grad_clip_norm, use_norm=norm)
    return loss, grads, norm, finite, sums

  def apply(self, grads, finite, sums=None, collect=False):
    """The cross-replica half: the guarded update of weights, averages and LC statistics.

    Args:
      grads: the replica half's (reduced) gradients, as it returned them (per-replica values
        under a distribution strategy).
      finite: whether the step is finite (a boolean tensor); when False nothing changes.
      sums: the reduced LC batch sums (plain tensors, e.g. `first_replica` of the replica
        half's), or None.
      collect: whether to fold `sums` into `flow.lc_statistics` (a Python bool or a boolean
        tensor).

    Returns:
      `finite`, once the update (if any) has run.
    """
    strategy = tf.distribute.get_strategy()

    def update():
      # Keras' `apply` runs in replica context and sums the replicas' gradients itself, so it
      # gets each replica's share of the already reduced gradient.
      strategy.extended.call_for_each_replica(self._replica_apply, args=(list(grads),))
      if self.averages is not None:  # after the weights moved; never on a skipped step
        self.averages.update()
      if sums is not None and collect is not False:
        _update_statistics(self.flow.lc_statistics, sums, collect)
      return tf.constant(True)

    return tf.cond(finite, update, lambda: tf.constant(False))

  def _replica_apply(self, grads):
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
      grads = [g / tf.cast(replicas, g.dtype) for g in grads]
    self.optimizer.apply(grads, list(self.variables))


def _update_statistics(statistics, sums, collect):
  """Folds `sums` into `statistics`, unconditionally or when the tensor `collect` is True."""
  if collect is True:
    return statistics.update(sums)

  def fold():
    with tf.control_dependencies([statistics.update(sums)]):
      return tf.constant(True)

  return tf.cond(collect, fold, lambda: tf.constant(False))
