"""The pre-training Trainer's `run_fn`: VideoMAE pre-training of the ViViT encoder on the train
split's clips (labels ignored) plus the ingested unlabelled footage; writes the directory the
fine-tuning Trainer starts from (its `base_model`)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from absl import logging
from tfx import v1 as tfx

from vivit_tfx.data import features
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import distribution, model, training
from vivit_tfx.models.videomae import videomae_pretrain

_RECONSTRUCTED_CLIPS = 3


def unlabeled_clips(pattern: str, tf_transform_output: tft.TFTransformOutput, batch_size: int,
                    num_frames: int) -> tf.data.Dataset:
  """Ingested clip records matching `pattern` → batches of random, augmented clips, forever."""
  spec = {features.FRAMES: tf_transform_output.raw_feature_spec()[features.FRAMES]}
  tft_layer = tf_transform_output.transform_features_layer()
  files = tf.data.Dataset.list_files(pattern, shuffle=True).repeat()
  return (tf.data.TFRecordDataset(files).shuffle(256).batch(batch_size, drop_remainder=True)
          .map(lambda r: model.frames_to_clips(tf.io.parse_example(r, spec)[features.FRAMES],
                                               tft_layer, num_frames, True),
               num_parallel_calls=tf.data.AUTOTUNE))


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
  batch_size on every replica), resumes from `model.resume_dir` as the Trainer does, and
  only the chief writes the pre-trained directory.
  """
  custom = fn_args.custom_config or {}
  vivit = training.precision_for_this_machine(ViViTConfig.from_dict(custom['vivit']),
                                              'PretrainTrainer')
  config = videomae_pretrain.PretrainConfig.from_dict(custom['pretrain'])
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  strategy = distribution.strategy_for(custom.get('distribution', 'auto'),
                                       custom.get('tpu_address', ''))
  chief, worker_id = distribution.is_chief(strategy)
  replicas = strategy.num_replicas_in_sync
  batch_size = config.batch_size * replicas
  print(f'PretrainTrainer: VideoMAE on {type(strategy).__name__} with {replicas} replica(s): '
        f'{batch_size} clips per step, mask ratio {config.mask_ratio}, precision '
        f'{vivit.precision}, XLA {vivit.jit_compile}', flush=True)
  clips_only = lambda clips, _: clips
  train = model.input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output,
                         batch_size, vivit.n_classes, training_mode=True,
                         num_frames=vivit.num_frames).map(clips_only)
  unlabeled = custom.get('unlabeled') or {}
  if unlabeled.get('pattern'):
    extra = unlabeled_clips(unlabeled['pattern'], tf_transform_output, batch_size,
                            vivit.num_frames)
    weights = [float(unlabeled.get('labelled_videos') or 1), float(unlabeled['videos'])]
    train = tf.data.Dataset.sample_from_datasets([train, extra], weights=weights, seed=0)
    logging.info('Pre-training on the train split and %s (%d videos)', unlabeled['pattern'],
                 unlabeled['videos'])
  evaluation = model.input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                              batch_size, vivit.n_classes,
                              training_mode=False).map(clips_only).repeat()
  total_steps, steps_per_epoch = training.step_budget(fn_args.train_steps,
                                                      int(custom.get('steps_per_epoch', 100)))
  recipe = vivit.replace(learning_rate=config.learning_rate, warmup_steps=config.warmup_steps,
                         weight_decay=config.weight_decay, accumulation_steps=1)
  with strategy.scope():
    pretrainer = videomae_pretrain.build_pretrainer(vivit, config)
    if config.checkpoint:
      videomae_pretrain.load_checkpoint(pretrainer, config.checkpoint)
    pretrainer.compile(optimizer=training.optimizer(recipe, pretrainer, total_steps),
                       jit_compile=bool(vivit.jit_compile))
  checkpoints = model.resume_dir(fn_args)  # kept by a killed run's clean-up, as the Trainer's
  checkpoint = training.TrainingCheckpoint(pretrainer, checkpoints, steps_per_epoch,
                                           is_chief=chief, worker_id=worker_id)
  distribution.prepare_multi_worker_fit(pretrainer, strategy, train)
  history = LossHistory(checkpoint)
  logs = [history, keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir,
                                               update_freq='epoch')]
  training.fit_resumable(pretrainer, train, steps_per_epoch, total_steps, checkpoint,
                         validation_data=evaluation,  # --eval-steps batches per epoch
                         validation_steps=max(1, fn_args.eval_steps or 1),
                         callbacks=logs if chief else [history], component='PretrainTrainer')
  if not chief:
    return
  clips = next(iter(evaluation.take(1)))[:_RECONSTRUCTED_CLIPS]
  shown = pretrainer.reconstruct(clips, pretrainer.random_mask(clips.shape[0]))
  videomae_pretrain.save(pretrainer, fn_args.serving_model_dir,
                         {'step': history.steps, 'loss': history.losses}, shown)
  if tf.io.gfile.exists(checkpoints):  # pre-trained and saved: nothing left to resume
    tf.io.gfile.rmtree(checkpoints)
