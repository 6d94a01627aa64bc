"""FixMatch (Sohn et al., NeurIPS 2020) in the Trainer: --unlabeled-videos with
--self-training-overrides '{"method": "fixmatch"}' (the default is pseudo-labels,
`self_training.py`, which measured better on the hard benchmark: README).

Every training step takes, beside the labelled batch, `unlabeled_ratio` unlabelled clips per
labelled one (a random clip of a random unlabelled video), each in two views:
  - weak: the augmentation every training clip gets (crop to ≥ 3/4 of the side, flip); the
    model's prediction on it, without dropout and without a gradient, is the clip's
    pseudo-label where the model is sure (top class probability ≥ `threshold`);
  - strong: a crop down to `strong_crop` of the side, a flip and photometric noise
    (`augment.strong`); the model is trained to give it that pseudo-label.
loss = labelled cross-entropy + `unlabeled_weight` x the mean over the unlabelled clips of
(sure ? cross-entropy(pseudo-label, strong view) : 0). No teacher is fixed: the labels are the
current model's, so the term starts once the model is sure of some clips and grows with it.
The share of unlabelled clips that counted is logged every epoch (`unlabelled_kept`).

The step is `training.accumulating_train_step` with this objective, so it runs under every
`tf.distribute` strategy, with gradient accumulation, loss scaling and XLA as the labelled
step does. The run gets the steps the labels alone would get.
"""
from __future__ import annotations

from typing import Dict, Tuple

import keras
import tensorflow as tf

from vivit_tfx.models.trainer import augment, training
from vivit_tfx.models.trainer.self_training import SelfTrainingConfig

CLIPS, WEAK, STRONG = 'clips', 'weak', 'strong'  # a FixMatch batch's x


def consistency(weak_logits: tf.Tensor, strong_logits: tf.Tensor, threshold: float
                ) -> Tuple[tf.Tensor, tf.Tensor]:
  """(the masked mean cross-entropy of the strong views against the weak views' sure
  pseudo-labels, the share of clips that were sure): logits [U, 1] (binary) or [U, C]."""
  weak_logits = tf.stop_gradient(tf.cast(weak_logits, tf.float32))
  strong_logits = tf.cast(strong_logits, tf.float32)
  if weak_logits.shape[-1] == 1:
    p = tf.sigmoid(weak_logits[:, 0])  # [U]
    confidence, target = tf.maximum(p, 1 - p), tf.cast(p >= 0.5, tf.float32)
    per_clip = tf.nn.sigmoid_cross_entropy_with_logits(labels=target,
                                                       logits=strong_logits[:, 0])
  else:
    p = tf.nn.softmax(weak_logits)  # [U, C]
    confidence, target = tf.reduce_max(p, -1), tf.argmax(p, -1)
    per_clip = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target,
                                                              logits=strong_logits)
  sure = tf.cast(confidence >= threshold, tf.float32)  # [U]
  return tf.reduce_mean(sure * per_clip), tf.reduce_mean(sure)


class FixMatch(training.Supervised):
  """The labelled loss plus `weight` x the consistency term on a batch's unlabelled clips;
  x is {CLIPS: [B, ...], WEAK: [U, ...], STRONG: [U, ...]}."""

  metric_names = ('unlabelled_kept',)

  def __init__(self, threshold: float, weight: float):
    self.threshold, self.weight = threshold, weight

  def labelled(self, x: Dict[str, tf.Tensor]) -> tf.Tensor:
    return x[CLIPS]

  def __call__(self, model: keras.Model, x: Dict[str, tf.Tensor], y):
    loss, y_pred, _ = super().__call__(model, x[CLIPS], y)
    unlabelled, kept = consistency(model(x[WEAK], training=False),
                                   model(x[STRONG], training=True), self.threshold)
    return loss + self.weight * unlabelled, y_pred, {'unlabelled_kept': kept}


def objective(config: SelfTrainingConfig) -> FixMatch:
  return FixMatch(config.threshold, config.unlabeled_weight)


def views(config: SelfTrainingConfig):
  """clips [U, T, H, W, C] → (weak view, strong view), as `model.unlabeled_input_fn` maps."""
  return lambda clips: (augment.augment(clips),
                        augment.strong(clips, config.strong_crop, config.strong_noise))


def batches(labelled: tf.data.Dataset, unlabelled: tf.data.Dataset) -> tf.data.Dataset:
  """(clips, labels) batches and (weak, strong) unlabelled batches → FixMatch batches
  ({CLIPS, WEAK, STRONG}, labels)."""
  return tf.data.Dataset.zip((labelled, unlabelled)).map(
      lambda l, u: ({CLIPS: l[0], WEAK: u[0], STRONG: u[1]}, l[1]))
