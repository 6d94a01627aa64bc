"""Picks the `tf.distribute` strategy for the Trainer: CPU, GPUs, TPU or multi-worker."""
from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ('auto', 'default', 'mirrored', 'multi_worker', 'tpu')


def _num_workers() -> int:
  cluster = json.loads(os.environ.get('TF_CONFIG', '{}') or '{}').get('cluster', {})
  return len(cluster.get('worker', [])) + len(cluster.get('chief', []))


def choose(kind: str = 'auto', tpu_address: str = '', num_gpus: int = 0) -> str:
  """'auto': multi-worker if TF_CONFIG lists several workers, TPU if an address is given,
  mirrored on GPUs, else the default (CPU) strategy. Explicit kinds are kept."""
  if kind not in STRATEGIES:
    raise ValueError(f'distribution {kind!r} is not one of {STRATEGIES}')
  if kind != 'auto':
    return kind
  if _num_workers() > 1:
    return 'multi_worker'
  if tpu_address:
    return 'tpu'
  return 'mirrored' if num_gpus else 'default'


def _own_collective_keys(strategy_class):
  """A new `strategy_class` with collective group keys apart from those of every strategy made
  before or after it in this process, as TensorFlow's own tests do (distribute/
  strategy_combinations.py): two strategies over the same devices in one process (a local
  run's PretrainTrainer and Trainer) otherwise share keys, and the second one's all-reduce
  fails with "Shape mismatch in the collective instance". Every process makes its strategies
  in the same order, so the workers of a multi-worker job still agree on their keys."""
  strategy_class._collective_key_base += 100_000  # pylint: disable=protected-access
  strategy = strategy_class()
  strategy_class._collective_key_base += 100_000  # pylint: disable=protected-access
  return strategy


def strategy_for(kind: str = 'auto', tpu_address: str = '') -> tf.distribute.Strategy:
  """The tf.distribute strategy for `choose(kind, …)` on this machine."""
  kind = choose(kind, tpu_address, len(tf.config.list_physical_devices('GPU')))
  if kind == 'multi_worker':
    return _own_collective_keys(tf.distribute.MultiWorkerMirroredStrategy)
  if kind == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or '')
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if kind == 'mirrored':
    return _own_collective_keys(tf.distribute.MirroredStrategy)
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy):
  """(is this worker the chief, its worker index): the 'chief' task, or worker 0 when the
  cluster has none; always (True, 0) outside multi-worker training."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_type = getattr(resolver, 'task_type', None)
  task_id = getattr(resolver, 'task_id', None) or 0
  if not task_type:
    return True, 0
  has_chief = 'chief' in (resolver.cluster_spec().as_dict() or {})
  return (task_type == 'chief' or (task_type == 'worker' and task_id == 0 and not has_chief),
          int(task_id))


def prepare_multi_worker_fit(model, strategy: tf.distribute.Strategy, dataset) -> None:
  """Works around Keras 3.6's fit under MultiWorkerMirroredStrategy: it passes the whole
  distributed (x, y) batch to one `strategy.reduce` call (keras/src/backend/tensorflow/
  trainer.py, `_maybe_symbolic_build`), which fails with "Attempt to convert a value
  (PerReplica…) to a Tensor". Builds the loss and metrics from one local batch instead and
  skips that step. It then reduces each step's scalar logs with `strategy.reduce('MEAN', v,
  axis=0)` ("Invalid reduction dimension 0 for input with 0 dimensions"): the steps return
  their logs as [1] vectors. No-op for other strategies."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return
  with strategy.scope():
    model._symbolic_build(data_batch=next(iter(dataset)))  # pylint: disable=protected-access
  model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None  # pylint: disable=protected-access
  for name in ('train_step', 'test_step'):
    step = getattr(model, name)
    setattr(model, name, lambda data, step=step: {
        k: tf.reshape(v, [1]) for k, v in step(data).items()})


def limit_threads(count: int) -> bool:
  """TensorFlow's intra- and inter-op thread pools at `count` threads each; False when
  TensorFlow had already started in this process (then they stay as they are)."""
  try:
    tf.config.threading.set_intra_op_parallelism_threads(count)
    tf.config.threading.set_inter_op_parallelism_threads(count)
  except RuntimeError:  # TF already initialised in this process
    return False
  return True
