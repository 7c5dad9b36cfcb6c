"""Distribution set-up: strategies, logical CPU replicas, the chief, per-replica input.

The training loop (`lcflow_tf.training`) runs under one `tf.distribute.Strategy`:
  * `make_strategy(name)` builds it (`STRATEGIES`); `configure_cpu_replicas(n)` splits the CPU
    into n logical devices first, so `mirrored`/`auto` can run several replicas without a GPU.
  * `is_chief(strategy)`: whether this process writes the run's files (`multi_worker`: the
    task `chief`, else worker 0; every other strategy: yes).
  * `dataset_fn(make_stream, batch_size, start_step)`: the input function of
    `strategy.distribute_datasets_from_function`, under which global step s consumes exactly
    global batch s of the single-device stream, whatever the number of workers and replicas.
"""

import os

import tensorflow as tf

from lcflow_tf import checks

STRATEGIES = ("auto", "default", "one_device", "mirrored", "multi_worker")


def configure_cpu_replicas(num):
  """Splits the first CPU into `num` logical devices (before TensorFlow initialises devices).

  Lets `mirrored`/`auto` run several replicas on a CPU-only machine (for trying and testing
  distributed training). Does nothing for `num == 1`.

  Raises:
    ValueError: when `num` < 1, or TensorFlow's devices are already initialised with another
      split.
  """
  checks.check_int("cpu_replicas", num, 1)
  if num == 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num)])
  except RuntimeError:
    have = len(tf.config.list_logical_devices("CPU"))
    if have != num:
      raise ValueError(f"cpu_replicas={num} cannot be set: TensorFlow already initialised "
                       f"{have} logical CPU device(s).") from None


def _multi_worker_strategy():
  if not os.environ.get("TF_CONFIG"):
    raise ValueError("strategy 'multi_worker' reads the cluster from the TF_CONFIG "
                     "environment variable, which is not set.")
  try:
    return tf.distribute.MultiWorkerMirroredStrategy()
  except RuntimeError as e:  # "Collective ops must be configured at program startup"
    raise ValueError("strategy 'multi_worker' must be created before TensorFlow "
                     f"initialises its devices (at program start): {e}") from None
  except (ValueError, KeyError, TypeError) as e:  # e.g. TF_CONFIG is not JSON
    raise ValueError(f"strategy 'multi_worker': TF_CONFIG is not a valid cluster "
                     f"description ({type(e).__name__}: {e}); expected JSON such as "
                     '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                     '"task": {"type": "worker", "index": 0}}.') from None


def make_strategy(name, cpu_replicas=1):
  """A `tf.distribute.Strategy` by name.

  Args:
    name: `auto` (MirroredStrategy over every visible GPU, or over the logical CPUs when there
      is no GPU and `cpu_replicas` > 1, else the default strategy), `default`, `one_device`
      (the first GPU, else the CPU), `mirrored` (all GPUs, else all logical CPUs) or
      `multi_worker` (MultiWorkerMirroredStrategy; the cluster comes from `TF_CONFIG`).
    cpu_replicas: logical CPU devices to use when there is no GPU (see
      `configure_cpu_replicas`, which must have been called before).

  Raises:
    ValueError: for an unknown name, or `multi_worker` without a valid `TF_CONFIG` or after
      TensorFlow initialised its devices.
  """
  checks.check_choice("strategy", name, STRATEGIES)
  if name == "multi_worker":  # before anything initialises TensorFlow's devices
    return _multi_worker_strategy()
  gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
  cpus = [d.name for d in tf.config.list_logical_devices("CPU")][:max(cpu_replicas, 1)]
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else cpus[0])
  if gpus:
    return tf.distribute.MirroredStrategy(gpus)
  if name == "mirrored" or len(cpus) > 1:
    return tf.distribute.MirroredStrategy(cpus)
  return tf.distribute.get_strategy()


def is_chief(strategy):
  """Whether this process is the chief of `strategy`'s cluster (the one that writes files)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return (resolver.task_type == "chief"
          or (resolver.task_type == "worker" and resolver.task_id == 0
              and "chief" not in resolver.cluster_spec().as_dict()))


def dataset_fn(make_stream, batch_size, start_step):
  """The `dataset_fn` of `distribute_datasets_from_function` from `start_step` on.

  The global batch of every step is the same whatever the number of workers and replicas:
  global step s consumes exactly global batch s of the single-device stream
  `make_stream(batch_size, s)`.

  * One input pipeline (one worker, any number of local replicas): the stream is batched
    per replica; the worker's R replicas take R consecutive per-replica batches per step,
    i.e. the R contiguous slices of the global batch.
  * Several input pipelines (`multi_worker`, one per worker): every pipeline builds the
    same global stream (same seed, same order, same dequantisation noise) and keeps only
    its own contiguous slice of each global batch,
    `batch[i * per_pipeline:(i + 1) * per_pipeline]` for pipeline i, re-batched to
    per-replica size when the worker has several replicas. Each worker therefore reads
    (and dequantises) the whole stream and discards the other workers' slices: cheap for
    the small images this library trains on, and it keeps multi-worker runs on exactly
    the data of a single-worker run with the same global batch.

  Args:
    make_stream: `make_stream(batch_size, start_step)` -> the training stream in batches of
      `batch_size` from batch `start_step` on (e.g. `data.make_train_pipeline`).
    batch_size: the global batch size.
    start_step: the first global step.

  Returns:
    `fn(input_context)` -> the `tf.data.Dataset` of that input pipeline.
  """
  def fn(ctx):
    per_replica = ctx.get_per_replica_batch_size(batch_size)
    replicas_here = ctx.num_replicas_in_sync // ctx.num_input_pipelines
    if ctx.num_input_pipelines == 1:
      return make_stream(per_replica, start_step * replicas_here)
    per_pipeline = per_replica * replicas_here
    begin = ctx.input_pipeline_id * per_pipeline
    stream = make_stream(batch_size, start_step)
    stream = stream.map(lambda batch: batch[begin:begin + per_pipeline])
    if replicas_here > 1:
      stream = stream.unbatch().batch(per_replica, drop_remainder=True)
    return stream.prefetch(tf.data.AUTOTUNE)

  return fn
