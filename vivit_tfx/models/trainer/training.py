"""ViViT training recipe: AdamW (decoupled decay, not on norms/biases/positions/CLS) with
optional layer-wise learning-rate decay, linear warm-up + cosine decay, clipping by global
norm, gradient accumulation (in the train step, so it works under every tf.distribute
strategy), loss scaling for float16 (also where a GPU lacks bfloat16), XLA, (label-smoothed)
cross-entropy on float32 logits, metrics; and resumable training (checkpoints every N steps
through tf.io.gfile, restored after a restart) of exactly the steps asked for."""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf
from absl import logging

from vivit_tfx.models.network.vivit_config import ViViTConfig

# Variables that get no weight decay: LayerNorm scales/offsets, biases (attention q/k/v
# are 2-D [heads, head_dim]), positional tables and the CLS token.
_NO_DECAY_NAMES = ('bias', 'gamma', 'beta', 'pos_embedding', 'cls_token')


def no_decay_variables(model: keras.Model) -> List[keras.Variable]:
  return [v for v in model.trainable_variables
          if len(v.shape) <= 1 or any(n in v.name for n in _NO_DECAY_NAMES)]


def precision_for(precision: str, gpus: List[Tuple[str, Tuple[int, int]]]) -> Tuple[str, str]:
  """(the precision to train in, a note for the console or ''): mixed_bfloat16 becomes
  mixed_float16 (with loss scaling, `optimizer`) when a GPU has no bfloat16 units (compute
  capability below 8.0: T4, V100, P100…); `gpus` holds (name, capability) pairs."""
  old = [(name, cc) for name, cc in gpus if tuple(cc) < (8, 0)]
  if precision != 'mixed_bfloat16' or not old:
    return precision, ''
  name, cc = old[0]
  return 'mixed_float16', (f'{name} (compute capability {cc[0]}.{cc[1]}) has no bfloat16: '
                           'training in mixed_float16 with dynamic loss scaling')


def precision_for_this_machine(config: ViViTConfig, who: str) -> ViViTConfig:
  """`config` with the precision this machine's GPUs train in (`precision_for`); a change is
  printed as `<who>: <note>`."""
  precision, note = precision_for(config.precision, visible_gpus())
  if not note:
    return config
  print(f'{who}: {note}', flush=True)
  return config.replace(precision=precision)


def visible_gpus() -> List[Tuple[str, Tuple[int, int]]]:
  """(name, compute capability) of every GPU TensorFlow sees."""
  out = []
  for gpu in tf.config.list_physical_devices('GPU'):
    details = tf.config.experimental.get_device_details(gpu)
    out.append((details.get('device_name', gpu.name),
                tuple(details.get('compute_capability', (0, 0)))))
  return out


def learning_rate_schedule(config: ViViTConfig, total_steps: int, cycles: Sequence[int] = ()):
  """Linear warm-up from 0 to `learning_rate`, then cosine decay to 0 at `total_steps`; with
  `cycles` (step counts summing to `total_steps`), one such warm-up and decay per cycle (the
  teacher's and the student's of self-training)."""
  if len(cycles) > 1:
    return CyclicSchedule([learning_rate_schedule(config, n) for n in cycles], cycles)
  warmup = min(config.warmup_steps, max(total_steps - 1, 0))
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0, decay_steps=max(total_steps - warmup, 1),
      warmup_target=config.learning_rate, warmup_steps=warmup)


class CyclicSchedule(keras.optimizers.schedules.LearningRateSchedule):
  """Schedules run one after the other: `schedules[i]` for `lengths[i]` steps, each from its
  own step 0 (a warm restart at every boundary)."""

  def __init__(self, schedules: Sequence, lengths: Sequence[int]):
    self.schedules, self.lengths = list(schedules), [int(n) for n in lengths]
    self.starts = [sum(self.lengths[:i]) for i in range(len(self.lengths))]  # first steps

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    branches = [lambda s=s, start=start: s(step - start) for s, start in
                zip(self.schedules, self.starts)]
    index = tf.reduce_sum(tf.cast(step >= tf.constant(self.starts[1:], tf.float32), tf.int32))
    return tf.switch_case(index, branches)

  def get_config(self):
    return {'lengths': self.lengths}


_BLOCK = re.compile(r'(spatial_encoder|temporal_encoder|encoder)/block_(\d+)/')


def layer_ids(model: keras.Model) -> Dict[str, int]:
  """Variable path → depth as VideoMAE/BEiT fine-tuning counts it: 0 for the embeddings
  (tubelets, positions, CLS), i + 1 for encoder block i (a Model 2 temporal encoder's blocks
  continue after the spatial ones, its positions/CLS at the spatial depth), L + 1 for the rest
  (final norms, head)."""
  config = model.config
  spatial = config.num_layers
  depth = spatial + (config.num_temporal_layers if config.variant == 'factorised_encoder'
                     else 0)
  ids = {}
  for v in model.trainable_variables:
    block = _BLOCK.search(v.path)
    if block:
      ids[v.path] = int(block.group(2)) + 1 + (spatial if block.group(1) == 'temporal_encoder'
                                               else 0)
    elif any(n in v.path for n in ('tubelet_embedding', 'conv_tokenizer', '/position/', '/cls')):
      ids[v.path] = spatial if 'temporal_encoder' in v.path else 0
    else:
      ids[v.path] = depth + 1
  return ids


def layer_scales(model: keras.Model, decay: float) -> Dict[str, float]:
  """Variable path → learning-rate factor decay^(L + 1 − depth) (head and norms: 1)."""
  ids = layer_ids(model)
  top = max(ids.values())
  return {path: decay ** (top - i) for path, i in ids.items()}


class ReplicaMeanApply:
  """For the optimizers of our train steps, whose gradients `apply_replica_mean` has already
  averaged over the replicas: Keras 3.6's own all-reduce (a sum, in `_backend_update_step`)
  is skipped, so an update moves the gradients between devices once, and every replica
  applies the same mean gradient (clipped at global norm `clipnorm`) to its copy of the
  variables. Under several replicas only those train steps (`accumulating_train_step`,
  VideoMAE's) may use these optimizers: Keras's default step does not average first."""

  averaged = False  # set by `apply_replica_mean` while it applies (at trace time)

  def _all_reduce_sum_gradients(self, grads_and_vars):
    context = tf.distribute.get_replica_context()
    if context and context.num_replicas_in_sync > 1 and not self.averaged:
      raise RuntimeError('these optimizers take gradients already averaged over the replicas: '
                         'under several replicas train with a step that applies them through '
                         'training.apply_replica_mean (compile_model sets one)')
    return list(grads_and_vars)


class ReplicaMeanAdamW(ReplicaMeanApply, keras.optimizers.AdamW):
  """AdamW for gradients already averaged over the replicas (`ReplicaMeanApply`)."""


class LayerDecayAdamW(ReplicaMeanApply, keras.optimizers.Adam):
  """AdamW whose update of each variable, the decoupled weight decay included, uses the
  learning rate times its layer's factor (`layer_scales`), as VideoMAE/BEiT fine-tuning's
  per-layer parameter groups do. The decay is applied here, before Adam's step, to every
  variable but `no_decay` (Keras's own decay would use the unscaled rate)."""

  def __init__(self, scales: Dict[str, float], no_decay: List[keras.Variable],
               weight_decay: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self._path_scales = scales
    self._no_decay_paths = {v.path for v in no_decay}
    self.decoupled_weight_decay = weight_decay
    self._key_scales: Dict[int, Tuple[float, bool]] = {}

  def build(self, variables):
    super().build(variables)
    # Keyed by the optimizer's own `_var_key`: under tf.distribute `update_step` is handed each
    # replica's component of a variable, which Keras maps back to the distributed variable only
    # there (keras/src/backend/tensorflow/optimizer.py); no public API does.
    self._key_scales = {self._var_key(v): (self._path_scales.get(v.path, 1.0),
                                           v.path not in self._no_decay_paths)
                        for v in variables}

  def update_step(self, gradient, variable, learning_rate):
    scale, decays = self._key_scales.get(self._var_key(variable), (1.0, False))
    rate = tf.cast(learning_rate, variable.dtype) * scale
    if decays and self.decoupled_weight_decay:
      variable.assign_sub(variable * tf.cast(self.decoupled_weight_decay, variable.dtype) * rate)
    super().update_step(gradient, variable, rate)


def optimizer(config: ViViTConfig, model: keras.Model, total_steps: int,
              cycles: Sequence[int] = ()) -> keras.Optimizer:
  """AdamW over `total_steps` updates (one learning-rate cycle, or `cycles`), gradients clipped
  at global norm `clipnorm`; wrapped in dynamic loss scaling for mixed_float16. Gradient accumulation is not the optimizer's (Keras
  3.6's applies its update inside a `cond`, which fails under any tf.distribute strategy with
  "merge_call called while defining a new graph"): `accumulating_train_step` does it."""
  # Every replica clips and applies the replicas' mean gradient (`apply_replica_mean`).
  options = dict(learning_rate=learning_rate_schedule(config, total_steps, cycles),
                 weight_decay=config.weight_decay, global_clipnorm=config.clipnorm or None)
  if config.layer_decay < 1:
    opt = LayerDecayAdamW(layer_scales(model, config.layer_decay), no_decay_variables(model),
                          **options)
  else:
    opt = ReplicaMeanAdamW(**options)
    opt.exclude_from_weight_decay(var_list=no_decay_variables(model))
  if config.precision == 'mixed_float16':
    opt = keras.optimizers.LossScaleOptimizer(opt)
  return opt


def apply_replica_mean(opt: keras.Optimizer, grads, weights) -> None:
  """Applies the mean over the replicas of each replica's `grads` (called in a replica
  context): one all-reduce, then every replica clips and applies that mean (the optimizers of
  `optimizer` skip Keras 3.6's own all-reduce, a sum of the replicas' gradients each clipped
  on its own)."""
  pairs = [(g, w) for g, w in zip(grads, weights) if g is not None]  # None: not in the loss
  grads, weights = [g for g, _ in pairs], [w for _, w in pairs]
  context = tf.distribute.get_replica_context()
  replicas = context.num_replicas_in_sync if context else 1
  if replicas > 1:
    grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
  inner = getattr(opt, 'inner_optimizer', opt)  # under dynamic loss scaling
  inner.averaged = True
  try:
    opt.apply_gradients(zip(grads, weights))
  finally:
    inner.averaged = False


def loss_tracker(model: keras.Model) -> keras.metrics.Metric:
  """The compiled model's loss mean, the one `fit` reports as `loss` (Keras lists it first)."""
  tracker = model.metrics[0] if model.metrics else None
  if tracker is None or tracker.name != 'loss':
    raise ValueError('the model must be compiled before its train step is built')
  return tracker


class Supervised:
  """The labelled clips' loss, the compiled one: `objective(model, x, y)` → (loss, y_pred
  [B, outputs], {metric name: a scalar to average}); FixMatch's (`fixmatch.FixMatch`) adds
  a term from unlabelled clips. `metric_names`: the extra scalars, reported per epoch."""

  metric_names: Tuple[str, ...] = ()

  def labelled(self, x):
    """The labelled clips of a batch's x."""
    return x

  def __call__(self, model: keras.Model, x, y):
    y_pred = model(x, training=True)  # [B, outputs]
    return model.compute_loss(x=x, y=y, y_pred=y_pred, training=True), y_pred, {}


def accumulating_train_step(model: keras.Model, k: int, objective: Supervised = Supervised(),
                            trackers: Optional[Dict[str, keras.metrics.Metric]] = None):
  """A train step for batches of k micro-batches ([k x B, ...] per replica, every tensor of a
  nested x): the gradients of `objective` on the k micro-batches, each computed on its own
  (activations of B clips in memory at a time), are averaged and applied once, so one step
  equals one step on the k x B batch. The loop is a `tf.while_loop` (one traced body, also
  under XLA) and the update happens outside it, where tf.distribute may synchronise.
  `trackers`: a mean metric for each of the objective's `metric_names`."""
  names = objective.metric_names

  def train_step(data):
    x, y = data[0], data[1]  # [k x B, T, H, W, C] (or a dict of such), [k x B, 1]
    split = lambda t: tf.reshape(t, tf.concat([[k, -1], tf.shape(t)[1:]], 0))  # [k, B, ...]
    micro_x, micro_y = tf.nest.map_structure(split, x), split(y)
    weights = model.trainable_weights

    def body(i, grads, losses, extras, preds):
      with tf.GradientTape() as tape:
        loss, y_pred, more = objective(model, tf.nest.map_structure(lambda t: t[i], micro_x),
                                       micro_y[i])
        scaled = model.optimizer.scale_loss(loss)
      step = tape.gradient(scaled, weights)
      return (i + 1, [g + tf.cast(s, g.dtype) for g, s in zip(grads, step)],
              losses + tf.cast(loss, tf.float32),
              {n: extras[n] + tf.cast(more[n], tf.float32) for n in names},
              preds.write(i, tf.cast(y_pred, tf.float32)))

    zeros = [tf.zeros(w.shape, w.dtype) for w in weights]
    preds = tf.TensorArray(tf.float32, size=k)
    start = (tf.constant(0), zeros, tf.constant(0.0), {n: tf.constant(0.0) for n in names},
             preds)
    # One micro-batch: no loop, so layers that synchronise replicas (batch statistics) may.
    _, grads, losses, extras, preds = body(*start) if k == 1 else tf.while_loop(
        lambda i, *_: i < k, body, start)
    apply_replica_mean(model.optimizer, [g / k for g in grads], weights)
    y_pred = preds.concat()  # [k x B, outputs]
    labelled = objective.labelled(x)
    loss_tracker(model).update_state(losses / k, sample_weight=tf.shape(labelled)[0])
    logs = model.compute_metrics(labelled, y, y_pred, sample_weight=None)
    for n in names:
      trackers[n].update_state(extras[n] / k)
      logs[n] = trackers[n].result()
    return logs

  return train_step


def build_loss_and_metrics(model: keras.Model, labelled: tf.data.Dataset) -> None:
  """Builds the compiled model's loss and metrics from the element spec of `labelled`
  ((clips, labels) batches), in the model's strategy scope. Keras 3.6's fit builds them from
  its own first batch, calling the model on that batch's x, which fails for an x that is not
  the model's input (FixMatch's dict of labelled and unlabelled clips)."""
  with model.distribute_strategy.scope():
    model._symbolic_build(data_batch=labelled.element_spec)  # pylint: disable=protected-access


class _SparseCategoricalSmoothed(keras.losses.Loss):
  """Categorical cross-entropy on logits with label smoothing, from integer labels."""

  def __init__(self, n_classes: int, label_smoothing: float, name='sparse_cce_smoothed'):
    super().__init__(name=name)
    self.n_classes = n_classes
    self._cce = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                     label_smoothing=label_smoothing)

  def call(self, y_true, y_pred):
    y = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, 'int32'), (-1,)),
                          self.n_classes)
    return self._cce(y, y_pred)


def loss(config: ViViTConfig) -> keras.losses.Loss:
  """Cross-entropy on logits: binary (one logit) or categorical (n_classes logits)."""
  if config.n_classes == 2:
    return keras.losses.BinaryCrossentropy(from_logits=True,
                                           label_smoothing=config.label_smoothing)
  return _SparseCategoricalSmoothed(config.n_classes, config.label_smoothing)


def metrics(config: ViViTConfig) -> list:
  if config.n_classes == 2:
    return [keras.metrics.BinaryAccuracy(threshold=0.0, name='accuracy'),
            keras.metrics.AUC(from_logits=True, name='auc')]
  return [keras.metrics.SparseCategoricalAccuracy(name='accuracy')]


def compile_model(model: keras.Model, config: ViViTConfig, total_steps: int,
                  cycles: Sequence[int] = (), objective: Optional[Supervised] = None) -> None:
  """`jit_compile` is passed as a bool: Keras's 'auto' turns XLA off under any tf.distribute
  strategy, an explicit True compiles each replica's step under Mirrored/TPU strategies too.
  `objective`: another training loss than the compiled one (FixMatch's), through
  `accumulating_train_step`; its extra metrics are logged and reset every epoch as the
  model's."""
  model.compile(optimizer=optimizer(config, model, total_steps, cycles), loss=loss(config),
                metrics=metrics(config), jit_compile=bool(config.jit_compile))
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  if (config.tokenizer == 'conv' and config.conv_norm == 'batch' and replicas > 1
      and config.accumulation_steps > 1):
    raise ValueError("conv_norm 'batch' synchronises batch statistics over the replicas, which "
                     'the accumulation loop cannot: use conv_norm \'group\' or '
                     'accumulation_steps 1 on several replicas')
  if objective is not None:
    # Created in the model's strategy scope; reset with the model's own metrics (every epoch).
    # Not attributes of the model: a built Keras model takes no new state.
    trackers = {n: keras.metrics.Mean(name=n) for n in objective.metric_names}
    reset = model.reset_metrics
    model.reset_metrics = lambda: [reset()] + [t.reset_state() for t in trackers.values()]
    model.train_step = accumulating_train_step(model, config.accumulation_steps, objective,
                                               trackers)
  elif config.accumulation_steps > 1 or replicas > 1:
    model.train_step = accumulating_train_step(model, config.accumulation_steps)


class TrainingCheckpoint(keras.callbacks.Callback):
  """Model + optimizer + step counter, saved every `every` training steps into `directory`
  (tf.train.CheckpointManager: any tf.io.gfile URI, keeps the newest only).

  Under MultiWorkerMirroredStrategy every worker saves (the save is collective); only the
  chief into `directory`, the others into a scratch folder that is removed afterwards.
  """

  def __init__(self, model: keras.Model, directory: str, every: int, is_chief: bool = True,
               worker_id: int = 0):
    super().__init__()
    self.set_model(model)
    self.every = max(1, every)
    self.directory = directory if is_chief else f'{directory}_worker{worker_id}_scratch'
    self.is_chief = is_chief
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='trained_steps')
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                          step=self.step)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=1)
    self.restored = False

  def restore(self) -> int:
    """Restores the newest checkpoint, if any (the first call only); returns the steps already
    trained. First builds
    the optimizer's slots for every trainable variable (also those outside the loss, VideoMAE's
    unused head), in the model's strategy scope, so a fresh and a resumed run save and restore
    the same slots on the same devices."""
    if self.restored:  # a later phase of the same run (self-training): the steps so far
      return int(self.step)
    self.restored = True
    if not self.model.optimizer.built:
      with self.model.distribute_strategy.scope():
        self.model.optimizer.build(self.model.trainable_variables)
    latest = self.manager.latest_checkpoint
    if not latest:
      return 0
    self.checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s after %d steps', latest, int(self.step))
    return int(self.step)

  def on_train_batch_end(self, batch, logs=None):
    self.step.assign_add(1)
    if int(self.step) % self.every == 0:
      self.manager.save(checkpoint_number=int(self.step))

  def cleanup(self) -> None:
    if not self.is_chief and tf.io.gfile.exists(self.directory):
      tf.io.gfile.rmtree(self.directory)


def step_budget(train_steps: int, steps_per_epoch: int) -> Tuple[int, int]:
  """(total_steps, steps_per_epoch) of a Trainer: exactly --train-steps updates, epochs of
  --steps-per-epoch (no longer than the run; the last epoch may be shorter, `epoch_plan`)."""
  total_steps = max(1, train_steps)
  return total_steps, max(1, min(steps_per_epoch, total_steps))


def epoch_plan(done: int, total_steps: int, steps_per_epoch: int) -> List[int]:
  """Steps of each epoch still to run after `done` of `total_steps`: up to the next epoch
  boundary first, then whole epochs, then the remainder (so exactly `total_steps` run)."""
  plan = []
  while done < total_steps:
    steps = min(steps_per_epoch - done % steps_per_epoch, total_steps - done)
    plan.append(steps)
    done += steps
  return plan


def fit_resumable(model: keras.Model, train, steps_per_epoch: int, total_steps: int,
                  checkpoint: TrainingCheckpoint, validation_data=None,
                  validation_steps: Optional[int] = None,
                  callbacks: Optional[list] = None, component: str = 'Trainer',
                  run_steps: Optional[int] = None) -> int:
  """Trains exactly `total_steps` steps (epochs of `steps_per_epoch`, the last one shorter
  if need be), continuing from the checkpoint's step after a restart (`component` says so);
  validates after every epoch. One `fit` call per run of equal epochs. Returns the number of
  steps run by this call. `run_steps`: the whole run's length, when this call trains a first
  phase of it (the resume line names it)."""
  first = not checkpoint.restored  # a later phase of the same run continues silently
  done = checkpoint.restore()
  if done and first:
    print(f'{component}: resumed from step {done} of {run_steps or total_steps}', flush=True)
  callbacks = [checkpoint] + list(callbacks or [])
  plan = epoch_plan(done, total_steps, steps_per_epoch)
  epoch = done // steps_per_epoch
  while plan:
    steps = plan[0]
    n = next((i for i, s in enumerate(plan) if s != steps), len(plan))  # equal epochs
    model.fit(train, steps_per_epoch=steps, initial_epoch=epoch, epochs=epoch + n,
              validation_data=validation_data, validation_steps=validation_steps, verbose=2,
              callbacks=callbacks)
    epoch, plan = epoch + n, plan[n:]
  checkpoint.cleanup()
  return total_steps - done if total_steps > done else 0
