"""ViViT training recipe: AdamW (decoupled decay, not on norms/biases/positions/CLS), linear
warm-up + cosine decay, (label-smoothed) cross-entropy on logits, metrics."""
from __future__ import annotations

from typing import List

import keras

from vivit_tfx.models.vivit_config import ViViTConfig

# Variables that get no weight decay: LayerNorm scales/offsets, biases (MultiHeadAttention's
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


def optimizer(config: ViViTConfig, model: keras.Model, total_steps: int) -> keras.Optimizer:
  opt = keras.optimizers.AdamW(learning_rate=learning_rate_schedule(config, total_steps),
                               weight_decay=config.weight_decay)
  opt.exclude_from_weight_decay(var_list=no_decay_variables(model))
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
  model.compile(optimizer=optimizer(config, model, total_steps), loss=loss(config),
                metrics=metrics(config))
