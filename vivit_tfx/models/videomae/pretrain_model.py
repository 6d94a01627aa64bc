"""The pre-training Trainer's `run_fn`: VideoMAE pre-training of the ViViT encoder (through a
conv tokenizer, with masked convolutions) on the train split's clips (labels ignored), plus the
ingested unlabelled footage with --unlabeled-use pretraining; writes the directory the
fine-tuning Trainer starts from (its `base_model`)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tfx import v1 as tfx

from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import model, training
from vivit_tfx.models.trainer.job import TrainerJob
from vivit_tfx.models.videomae import videomae_pretrain

_RECONSTRUCTED_CLIPS = 3


class LossHistory(keras.callbacks.Callback):
  """The loss of every training step (not Keras' running mean), at the run's step number:
  after a resume the first one is the step after the checkpoint's (`checkpoint`, a
  TrainingCheckpoint listed before this callback, counts the steps)."""

  def __init__(self, checkpoint: training.TrainingCheckpoint):
    super().__init__()
    self.checkpoint = checkpoint
    self.steps, self.losses = [], []

  def on_train_batch_end(self, batch, logs=None):
    self.steps.append(int(self.checkpoint.step))
    self.losses.append(float((logs or {}).get('step_loss', np.nan)))


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """custom_config: 'vivit' (the fine-tuning ViViTConfig dict), 'pretrain' (PretrainConfig
  dict), 'unlabeled' ({'pattern', 'videos', 'labelled_videos'} or {}), 'distribution' and
  'tpu_address' (as the Trainer's), 'steps_per_epoch'.

  Trains under the Trainer's `tf.distribute` strategy (the global batch is --pretrain's
  batch_size on every replica), resumes from `job.resume_dir` as the Trainer does, and
  only the chief writes the pre-trained directory.
  """
  vivit = training.precision_for_this_machine(
      ViViTConfig.from_dict(fn_args.custom_config['vivit']), 'PretrainTrainer')
  job = TrainerJob(fn_args, 'PretrainTrainer')
  config = videomae_pretrain.PretrainConfig.from_dict(job.custom['pretrain'])
  batch_size = config.batch_size * job.replicas
  how = ' (masked convolutions in the conv stem)' if vivit.tokenizer == 'conv' else ''
  print(f'PretrainTrainer: VideoMAE{how} on {job.where()}: {batch_size} clips per step, mask '
        f'ratio {config.mask_ratio}, precision {vivit.precision}, XLA {vivit.jit_compile}',
        flush=True)
  clips_only = lambda clips, _: clips
  train = model.input_fn(fn_args.train_files, fn_args.data_accessor, job.transform,
                         batch_size, vivit.n_classes, training_mode=True,
                         num_frames=vivit.num_frames).map(clips_only)
  unlabeled = job.custom.get('unlabeled') or {}
  if unlabeled.get('pattern'):
    extra = model.unlabeled_input_fn(unlabeled['pattern'], job.transform, batch_size,
                                     vivit.num_frames)
    weights = [float(unlabeled.get('labelled_videos') or 1), float(unlabeled['videos'])]
    train = tf.data.Dataset.sample_from_datasets([train, extra], weights=weights, seed=0)
    logging.info('Pre-training on the train split and %s (%d videos)', unlabeled['pattern'],
                 unlabeled['videos'])
  evaluation = model.input_fn(fn_args.eval_files, fn_args.data_accessor, job.transform,
                              batch_size, vivit.n_classes,
                              training_mode=False).map(clips_only).repeat()
  recipe = vivit.replace(learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
                         weight_decay=config.weight_decay, accumulation_steps=1)
  with job.strategy.scope():
    pretrainer = videomae_pretrain.build_pretrainer(vivit, config)
    if config.checkpoint:
      videomae_pretrain.load_checkpoint(pretrainer, config.checkpoint)
    pretrainer.compile(optimizer=training.optimizer(recipe, pretrainer, job.total_steps),
                       jit_compile=bool(vivit.jit_compile))
  # Its own resume folder (`job.resume_dir`), kept by a killed run's clean-up as the Trainer's.
  checkpoint = job.resumable(pretrainer, train)
  history = LossHistory(checkpoint)
  job.fit(pretrainer, train, evaluation, checkpoint, callbacks=[history] + job.logs())
  if not job.chief:
    return
  clips = next(iter(evaluation.take(1)))[:_RECONSTRUCTED_CLIPS]
  shown = pretrainer.reconstruct(clips, pretrainer.random_mask(clips.shape[0]))
  videomae_pretrain.save(pretrainer, fn_args.serving_model_dir,
                         {'step': history.steps, 'loss': history.losses}, shown)
  job.finish()
