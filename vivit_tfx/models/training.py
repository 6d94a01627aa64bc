"""ViViT training recipe: AdamW (decoupled decay, not on norms/biases/positions/CLS) with
optional layer-wise learning-rate decay, linear warm-up + cosine decay, clipping by global norm, gradient accumulation, loss scaling for
float16, XLA, (label-smoothed) cross-entropy on float32 logits, metrics; and resumable
training (checkpoints every N steps through tf.io.gfile, restored after a restart)."""
from __future__ import annotations

import math
import re
from typing import Dict, List, Optional

import keras
import tensorflow as tf
from absl import logging

from vivit_tfx.models.vivit_config import ViViTConfig

# Variables that get no weight decay: LayerNorm scales/offsets, biases (attention q/k/v
# are 2-D [heads, head_dim]), positional tables and the CLS token.
_NO_DECAY_NAMES = ('bias', 'gamma', 'beta', 'pos_embedding', 'cls_token')


def no_decay_variables(model: keras.Model) -> List[keras.Variable]:
  return [v for v in model.trainable_variables
          if len(v.shape) <= 1 or any(n in v.name for n in _NO_DECAY_NAMES)]


def learning_rate_schedule(config: ViViTConfig, total_steps: int):
  """Linear warm-up from 0 to `learning_rate`, then cosine decay to 0 at `total_steps`."""
  warmup = min(config.warmup_steps, max(total_steps - 1, 0))
  return keras.optimizers.schedules.CosineDecay(
      initial_learning_rate=0.0, decay_steps=max(total_steps - warmup, 1),
      warmup_target=config.learning_rate, warmup_steps=warmup)


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
    elif 'tubelet_embedding' in v.path or '/position/' in v.path or '/cls' in v.path:
      ids[v.path] = spatial if 'temporal_encoder' in v.path else 0
    else:
      ids[v.path] = depth + 1
  return ids


def layer_scales(model: keras.Model, decay: float) -> Dict[str, float]:
  """Variable path → learning-rate factor decay^(L + 1 − depth) (head and norms: 1)."""
  ids = layer_ids(model)
  top = max(ids.values())
  return {path: decay ** (top - i) for path, i in ids.items()}


class LayerDecayAdamW(keras.optimizers.AdamW):
  """AdamW whose update of each variable uses the learning rate times its layer's factor
  (`layer_scales`). The decoupled weight decay keeps the base schedule."""

  def __init__(self, scales: Dict[str, float], **kwargs):
    super().__init__(**kwargs)
    self._path_scales = scales
    self._key_scales: Dict[int, float] = {}

  def build(self, variables):
    super().build(variables)
    self._key_scales = {self._var_key(v): self._path_scales.get(v.path, 1.0) for v in variables}

  def update_step(self, gradient, variable, learning_rate):
    scale = self._key_scales.get(self._var_key(variable), 1.0)
    super().update_step(gradient, variable, learning_rate * scale)


def optimizer(config: ViViTConfig, model: keras.Model, total_steps: int) -> keras.Optimizer:
  """AdamW over `total_steps` batches: one update every `accumulation_steps` batches,
  gradients averaged then clipped at global norm `clipnorm`; wrapped in dynamic loss scaling
  for mixed_float16. The schedule (and `warmup_steps`) counts batches: Keras 3.6 evaluates it
  at the optimizer's raw batch counter, accumulation included."""
  k = config.accumulation_steps
  options = dict(learning_rate=learning_rate_schedule(config, total_steps),
                 weight_decay=config.weight_decay, global_clipnorm=config.clipnorm or None,
                 gradient_accumulation_steps=k if k > 1 else None)
  opt = (LayerDecayAdamW(layer_scales(model, config.layer_decay), **options)
         if config.layer_decay < 1 else keras.optimizers.AdamW(**options))
  opt.exclude_from_weight_decay(var_list=no_decay_variables(model))
  if config.precision == 'mixed_float16':
    opt = keras.optimizers.LossScaleOptimizer(opt)
  return opt


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


def compile_model(model: keras.Model, config: ViViTConfig, total_steps: int) -> None:
  """`jit_compile` is passed as a bool: Keras's 'auto' turns XLA off under any tf.distribute
  strategy, an explicit True compiles each replica's step under Mirrored/TPU strategies too."""
  model.compile(optimizer=optimizer(config, model, total_steps), loss=loss(config),
                metrics=metrics(config), jit_compile=bool(config.jit_compile))


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

  def restore(self) -> int:
    """Restores the newest checkpoint, if any; returns the steps already trained."""
    latest = self.manager.latest_checkpoint
    if not latest:
      return 0
    self.model.optimizer.build(self.model.trainable_variables)  # slots exist before restoring
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


def fit_resumable(model: keras.Model, train, steps_per_epoch: int, total_steps: int,
                  checkpoint: TrainingCheckpoint, validation_data=None,
                  validation_steps: Optional[int] = None,
                  callbacks: Optional[list] = None) -> int:
  """Trains up to `total_steps` steps (epochs of `steps_per_epoch`), continuing from the
  checkpoint's step after a restart: a partial epoch first, then whole epochs. Returns the
  number of steps run by this call."""
  done = checkpoint.restore()
  callbacks = [checkpoint] + list(callbacks or [])
  run = 0
  if done % steps_per_epoch and done < total_steps:
    rest = min(steps_per_epoch - done % steps_per_epoch, total_steps - done)
    model.fit(train, steps_per_epoch=rest, epochs=1, verbose=2, callbacks=callbacks)
    run, done = run + rest, done + rest
  epochs = math.ceil(total_steps / steps_per_epoch)
  if done < total_steps:
    model.fit(train, steps_per_epoch=steps_per_epoch, initial_epoch=done // steps_per_epoch,
              epochs=epochs, validation_data=validation_data, validation_steps=validation_steps,
              verbose=2, callbacks=callbacks)
    run += total_steps - done
  checkpoint.cleanup()
  return run
