"""The LC pilot protocols: how a run whose split is fixed from data trains.

A data-dependent split (`lc.DATA_DEPENDENT_SPLITS`) ranks each junction's channels by
likelihood-contribution statistics, so a run with one starts with pilots that collect them;
the split is fixed from them and the model trains with it. The protocols
(`TrainConfig.lc_pilot`, one of `config.PILOT_PROTOCOLS`):
  * `static`: the first `lc_pilot_steps` steps train the model with the static split at every
    junction while collecting statistics; then every junction is fixed at once and training
    continues from the pilot weights, or with `lc_reinit` from a freshly built flow's weights
    (same config and seed), the ActNorms initialised again with the fixed split and the
    optimizer's state zeroed (`end_static_pilot`). The statistics are shaped by the pilot's
    split: the half a junction factors out is pushed towards the Normal prior during
    training, so it scores a higher log N(h).
  * `nosplit` (free of that confound): the junctions are decided one at a time, outermost
    first (`run_nosplit_pilots`). Pilot j is a sub-run of the same run (data, recipe, seed,
    `train_steps`, hence the same learning-rate schedule and first batches; `pilot_config`)
    in `model_dir/pilot_<j>`, resumable, that trains for `lc_pilot_steps` steps a flow in
    which the junctions already decided (< j) use their fixed order and junction j and every
    deeper one factor nothing out (`Flow(..., open_junctions_from=j)`), so no split has shaped
    the statistics at junction j; junction j's order is fixed from them (`lc.split_order`).
    Then the model, from fresh weights and with the fixed orders, trains from step
    `total_steps`, its ActNorms initialised on that step's batch.
The pilots' steps count in the run's budget (`train_steps`, `total_steps`). The budget-matched
control (`TrainConfig.budget_matched_control`) is the `static` split run through the same
protocol: its pilots train and their statistics are kept for the heatmaps, but the order it
fixes is the identity, so the static model trains the same steps from the same point of the
budget as a data-dependent split does, and only the ranking differs.

Training (`train`, or `run` from a config): this module drives the `training.Trainer`, which
knows nothing of pilots. A run whose pilots fix its split (`TrainConfig.uses_pilot`) starts
with the split open (`flow.split_fixed` False; the steps collect statistics while it is open);
`train` runs the trainer's loop in segments (`Trainer.loop`) and fixes the split between
them. The newest checkpoint is never saved over: when the static pilot ends at a step that
already has one (written before the split was fixed), the fixed split is saved with the next
checkpoint, and a run resumed from that one fixes the same split again from the same saved
statistics. After the pilots the run keeps the statistics its split was fixed from.

In Keras (`lcflow_tf.FlowModel`): the `SplitPilot` callback runs the `static` protocol in
`fit` (`static_pilot_ends`), and `FlowModel.pilot` builds the model of a `nosplit` pilot
(`pilot_model`).
"""

import dataclasses
import os

import tensorflow as tf
from absl import logging

from lcflow_tf import checks
from lcflow_tf import flows
from lcflow_tf import lc
from lcflow_tf import training


# --- the protocols' settings ------------------------------------------------------------------
def total_steps(config):
  """Steps of `config`'s budget that its pilots take: `lc_pilot_steps`, once per junction
  under `nosplit`; 0 for a run without pilots."""
  if not config.uses_pilot:
    return 0
  if config.lc_pilot == "nosplit":
    return config.lc_pilot_steps * max(config.model.levels - 1, 0)
  return config.lc_pilot_steps


def check(config):
  """Checks the rules that tie the pilot settings of a `TrainConfig` together.

  Raises:
    ValueError: naming the fields, their values and what is allowed: the budget-matched
      control with another split than `static`; for a run with pilots, `lc_pilot_steps` < 1,
      `lc_reinit` under `nosplit`, pilots that take the whole budget, or a sub-run's
      `open_junctions_from`.
  """
  split = config.model.split
  if config.budget_matched_control and split != "static":
    raise ValueError(f"budget_matched_control applies to split='static' only (the data-dependent "
                     f"splits have pilots anyway), got budget_matched_control=True with "
                     f"split={split!r}.")
  if not config.uses_pilot:
    return
  if config.open_junctions_from is not None:
    raise ValueError(f"open_junctions_from is set by the nosplit pilots for their sub-runs "
                     f"(static split), got open_junctions_from={config.open_junctions_from!r} "
                     f"with split={split!r}.")
  if config.lc_pilot_steps < 1:
    raise ValueError(f"lc_pilot_steps must be >= 1 for split {split!r} (the split is fixed "
                     f"from statistics collected during the pilot), got "
                     f"{config.lc_pilot_steps!r}.")
  if config.lc_pilot == "nosplit" and config.lc_reinit:
    raise ValueError("lc_reinit applies to lc_pilot='static' only (the 'nosplit' protocol "
                     "always trains the model from fresh weights after its pilots), got "
                     "lc_reinit=True with lc_pilot='nosplit'.")
  if total_steps(config) >= config.train_steps:
    pilots = config.model.levels - 1
    per = (f" ({pilots} pilot{'s' * (pilots != 1)} of {config.lc_pilot_steps} steps)"
           if config.lc_pilot == "nosplit" else "")
    raise ValueError(f"lc_pilot_steps must be smaller than train_steps (the step budget "
                     f"counts the pilot), got lc_pilot_steps={config.lc_pilot_steps}{per} and "
                     f"train_steps={config.train_steps}.")


def pilot_model(model):
  """The `FlowConfig` of a `nosplit` pilot's flow: `model` under the static split (the
  decided junctions get their orders; from its junction on, the flow factors nothing out)."""
  return dataclasses.replace(model, split="static")


def pilot_config(config, junction):
  """The `TrainConfig` of the sub-run of the `nosplit` pilot of `junction`.

  The same run (data, recipe, seed, `train_steps`, hence the same learning-rate schedule and
  the same first batches) with the pilot's model (`pilot_model`, open junctions from
  `junction` on: `open_junctions_from`), no weight averages; it is trained for
  `lc_pilot_steps` steps (`Trainer.train(until_step=...)`).
  """
  checks.check_int("junction", junction, 0, config.model.levels - 2, caller="pilot_config")
  return dataclasses.replace(config, model=pilot_model(config.model), ema_decay=0.0,
                             lc_reinit=False, budget_matched_control=False,
                             open_junctions_from=junction)


# --- the state of a run -----------------------------------------------------------------------
def split_open(flow):
  """Whether `flow`'s split is still open (to be fixed from the statistics being collected)."""
  return not bool(flow.split_fixed.numpy())


def static_pilot_ends(flow, step, pilot_steps):
  """Whether the `static` pilot of `flow` ends before optimizer step `step + 1`: its split is
  open and `pilot_steps` steps are done."""
  return split_open(flow) and step >= pilot_steps


def pending(trainer):
  """Whether the pilots of `trainer`'s run still have to fix its split."""
  return trainer.config.uses_pilot and split_open(trainer.flow)


# --- driving the Trainer ----------------------------------------------------------------------
def train(trainer, until_step=None):
  """Trains `trainer`'s run, pilots included, until `until_step` (default `train_steps`).

  A run without pilots trains as `trainer.train` does. Otherwise the pilots that are still
  pending run first (the `nosplit` sub-runs, or the `static` pilot's steps), the split is
  fixed, and the model trains on; the run resumes wherever it stopped (inside a pilot, at its
  end, or after it).

  Returns:
    The `training.TrainResult` of the whole call (the model's steps; not the sub-runs').

  Raises:
    ValueError: when the pilot settings break `check`'s rules.
    training.TrainingError: when training diverges beyond recovery.
  """
  c = trainer.config
  check(c)
  if not c.uses_pilot:
    return trainer.train(until_step)
  loop = trainer.loop(until_step)
  while trainer.step < loop.target:
    if not pending(trainer):
      loop.run()
    elif c.lc_pilot == "nosplit":
      run_nosplit_pilots(trainer)
    elif not static_pilot_ends(trainer.flow, trainer.step, c.lc_pilot_steps):
      loop.run(until_step=c.lc_pilot_steps)
    else:
      end_static_pilot(trainer)
      if trainer.checkpoints.saved_step != trainer.step:  # never rewrite the newest in place
        trainer.save_checkpoint()
  return loop.finish()


def run(config, model_dir, strategy=None, dataset=None):
  """Checks `config` (`check`), builds its `Trainer` and `train`s it; the `TrainResult`."""
  check(config)
  return train(training.Trainer(config, model_dir, strategy=strategy, dataset=dataset))


def end_static_pilot(trainer):
  """Ends the `static` pilot of `trainer`'s run: fixes its split (eager).

  Every junction's order is fixed from the statistics (`lc.fix_split`). With `lc_reinit`,
  every trainable variable then takes the value it has in a flow freshly built from the same
  config and seed, the ActNorms are initialised again (with the fixed split) on the global
  batch of the current step, and the optimizer's state (moments, iterations, hence the
  warm-up) is zeroed. Either way the weight averages restart from the weights training
  continues with (the fixed split changes what the weights mean).

  Returns:
    The orders that were set, outermost junction first.
  """
  c, flow = trainer.config, trainer.flow
  with trainer.strategy.scope():
    fresh = _fresh_weights(trainer) if c.lc_reinit else None
    chosen = lc.fix_split(flow.junctions, flow.lc_statistics, trainer.flow_config.split,
                          split_fixed=flow.split_fixed)
    if fresh is not None:
      for variable, value in zip(flow.trainable_variables, fresh, strict=True):
        variable.assign(value)
      flow.initialize(trainer.global_batch(trainer.step), force=True)
      for variable in trainer.optimizer.variables:
        variable.assign(tf.zeros(variable.shape, variable.dtype))
    if trainer.averages is not None:
      trainer.averages.reset()
  logging.info("Pilot finished at step %d: split %r fixed from %d images%s%s.", trainer.step,
               trainer.flow_config.split, int(flow.lc_statistics.count.numpy()),
               "; weights and optimizer re-initialised" if c.lc_reinit else
               "; continuing from the pilot weights",
               "; weight averages restarted from these weights"
               if trainer.averages is not None else "")
  return chosen


def _fresh_weights(trainer):
  """The trainable variables' values in a flow freshly built from the run's config and seed."""
  training.seed_initializers(trainer.config.seed)
  fresh = flows.Flow(trainer.flow_config)
  return [variable.numpy() for variable in fresh.trainable_variables]


def pilot_trainer(trainer, junction, orders):
  """The `Trainer` of the sub-run of the `nosplit` pilot of `junction` (`model_dir/pilot_<j>`).

  Args:
    trainer: the run's `Trainer`.
    junction: the junction the pilot decides.
    orders: the fixed orders of the junctions above it, outermost first.
  """
  return training.Trainer(pilot_config(trainer.config, junction),
                          os.path.join(trainer.model_dir, f"pilot_{junction}"),
                          strategy=trainer.strategy, dataset=trainer.dataset,
                          split_orders=orders)


def run_nosplit_pilots(trainer):
  """Runs the `nosplit` pilots of `trainer`'s run and sets its model up from fresh weights.

  Pilot j trains `pilot_trainer(trainer, j, orders)` to `lc_pilot_steps` (resuming its own
  checkpoint after a crash; a finished pilot is only restored) and fixes junction j's order
  from its statistics at junction j. Then the run's flow, as built (fresh weights, never
  trained), gets the orders (`lc.set_split`) and each junction's statistics from its pilot
  (for the heatmaps); the global step moves to `total_steps` (the budget counts the pilots;
  the data stream and the learning-rate decay continue from there, the warm-up restarts with
  the untouched optimizer), the ActNorms are initialised on that step's global batch with the
  fixed split, the averages restart from there, and a checkpoint holding the split is written
  before the model trains.

  Returns:
    The fixed orders, outermost junction first.
  """
  c, flow = trainer.config, trainer.flow
  orders = []
  for j in range(len(flow.junctions)):
    pilot = pilot_trainer(trainer, j, orders)
    pilot.train(until_step=c.lc_pilot_steps)
    statistics = pilot.flow.lc_statistics
    orders.append(lc.split_order(statistics, j, trainer.flow_config.split))
    with trainer.strategy.scope():
      flow.lc_statistics.copy_junction(statistics, j)  # every pilot: lc_pilot_steps batches
    logging.info("nosplit pilot %d finished: junction %d's %r order fixed from %d images.",
                 j, j, trainer.flow_config.split, int(statistics.count.numpy()))
  with trainer.strategy.scope():
    lc.set_split(flow.junctions, orders, flow.split_fixed)
    trainer.skip_to(total_steps(c))
    flow.initialize(trainer.global_batch(trainer.step), force=True)
    if trainer.averages is not None:
      trainer.averages.reset()
  trainer.save_checkpoint()
  return orders
