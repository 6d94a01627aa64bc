"""What the fine-tuning and the pre-training `run_fn` share: one Trainer execution's set-up,
resumable training loop and clean-up (`TrainerJob`)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import List, Optional, Sequence

import keras
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from vivit_tfx.models.trainer import distribution, training


def resume_dir(fn_args: tfx.components.FnArgs) -> str:
  """Where this training job keeps its checkpoints: `<model_run>/../resume/<key>`, the key a
  hash of the Trainer's inputs and settings. A run started again after a kill (a new
  execution, same command and inputs) and a restarted pod (same execution) find the same
  folder, and it is not the execution's own, which the clean-up of a killed run removes."""
  key = hashlib.sha256(json.dumps(
      [sorted(fn_args.train_files), sorted(fn_args.eval_files), fn_args.transform_output,
       fn_args.train_steps, fn_args.custom_config], sort_keys=True, default=str).encode())
  return os.path.join(os.path.dirname(fn_args.model_run_dir.rstrip('/')), 'resume',
                      key.hexdigest()[:16])


class TrainerJob:
  """One Trainer execution (`component` names it in what it prints): its `tf.distribute`
  strategy (`custom_config` 'distribution', 'tpu_address') and whether this worker is the
  chief, the Transform output, the step budget (--train-steps in epochs of
  'steps_per_epoch'), a checkpoint in `resume_dir` that a restarted job resumes from, the
  chief's TensorBoard logs, and the checkpoints' removal once the model is written."""

  def __init__(self, fn_args: tfx.components.FnArgs, component: str):
    self.fn_args = fn_args
    self.component = component
    self.custom = fn_args.custom_config or {}
    self.transform = tft.TFTransformOutput(fn_args.transform_output)
    self.strategy = distribution.strategy_for(self.custom.get('distribution', 'auto'),
                                              self.custom.get('tpu_address', ''))
    self.chief, self.worker_id = distribution.is_chief(self.strategy)
    self.total_steps, self.steps_per_epoch = training.step_budget(
        fn_args.train_steps, int(self.custom.get('steps_per_epoch', 100)))
    self.checkpoints = resume_dir(fn_args)

  @property
  def replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  def where(self) -> str:
    """'MirroredStrategy with 2 replica(s)', for the job's first line."""
    return f'{type(self.strategy).__name__} with {self.replicas} replica(s)'

  def resumable(self, model: keras.Model, train: tf.data.Dataset,
                every: int = 0) -> training.TrainingCheckpoint:
    """The compiled `model`'s checkpoint every `every` steps (0: every epoch), which `fit`
    restores; under multi-worker training the fit is prepared on a batch of `train`."""
    checkpoint = training.TrainingCheckpoint(model, self.checkpoints,
                                             every or self.steps_per_epoch,
                                             is_chief=self.chief, worker_id=self.worker_id)
    distribution.prepare_multi_worker_fit(model, self.strategy, train)
    return checkpoint

  def logs(self) -> List[keras.callbacks.Callback]:
    """TensorBoard logs in the model run folder, on the chief only."""
    return [keras.callbacks.TensorBoard(log_dir=self.fn_args.model_run_dir,
                                        update_freq='epoch')] if self.chief else []

  def fit(self, model: keras.Model, train: tf.data.Dataset, evaluation: tf.data.Dataset,
          checkpoint: training.TrainingCheckpoint, steps: Optional[int] = None,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> int:
    """`training.fit_resumable` for `steps` (the whole budget by default), validating on
    --eval-steps batches of `evaluation` after each epoch."""
    return training.fit_resumable(
        model, train, self.steps_per_epoch, self.total_steps if steps is None else steps,
        checkpoint, validation_data=evaluation,
        validation_steps=max(1, self.fn_args.eval_steps or 1), callbacks=list(callbacks), component=self.component, run_steps=self.total_steps)

  def finish(self) -> None:
    """After the chief wrote the model: its checkpoints have nothing left to resume; those of
    killed jobs with other inputs or settings are kept for their resume, and said."""
    if tf.io.gfile.exists(self.checkpoints):
      tf.io.gfile.rmtree(self.checkpoints)
    others = tf.io.gfile.glob(os.path.join(os.path.dirname(self.checkpoints), '*'))
    if others:
      print(f'{self.component}: {len(others)} checkpoint folder(s) of killed jobs with other '
            f'inputs or settings kept for a resume in {os.path.dirname(self.checkpoints)} '
            '(remove them when those runs are not to be resumed)', flush=True)
