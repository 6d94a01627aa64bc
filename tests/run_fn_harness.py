"""Runs a Trainer's run_fn in this process on 8 synthetic clips, with the Transform graph
and data accessor stood in for by in-memory stubs (used as a script by the distribution tests).

    python tests/run_fn_harness.py OUT '{"vivit": {...}, "distribution": ...}' [LOGICAL_CPUS]

With a 'pretrain' key (a PretrainConfig dict) the pre-training Trainer's run_fn runs instead.

LOGICAL_CPUS > 1 splits the CPU into that many logical devices before TensorFlow starts
(a MirroredStrategy over them rehearses a multi-GPU machine). The trained weights are saved to
OUT/weights_<task>.npz; the last line printed is `DONE <task>`. Environment: HARNESS_MODEL_RUN
names the Trainer's model_run folder (default OUT/model_run_<task>); HARNESS_KILL=1 kills the
process (signal 9) right after the first training checkpoint (at or after step
HARNESS_KILL_AFTER, if set), as a preemption would.
"""
import json
import os
import sys
import types

import numpy as np
import tensorflow as tf


def main(out: str, custom: dict, logical_cpus: int = 1) -> None:
  if logical_cpus > 1:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices('CPU')[0],
        [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from vivit_tfx.bench.export_size import DecodeOnlyTransform  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import export, model as trainer, training  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.videomae import pretrain_model  # pylint: disable=g-import-not-at-top
  keras.config.disable_traceback_filtering()
  task = json.loads(os.environ.get('TF_CONFIG', '{}') or '{}').get('task', {}).get('index', 0)
  vivit = custom['vivit']
  frames, size = vivit['num_frames'], tuple(vivit['image_size'])
  stub = DecodeOnlyTransform(frames, size)
  stub.raw_metadata = types.SimpleNamespace(schema=None)
  tft.TFTransformOutput = lambda path: stub  # the Transform graph's stand-in

  def dataset_factory(file_pattern, options, schema):
    records = export.synthetic_examples(frames, size, count=8)
    parsed = tf.io.parse_example(records, stub.raw_feature_spec())
    labels = tf.constant([0, 1] * 4, tf.int64)
    data = tf.data.Dataset.from_tensor_slices((parsed, labels))
    return data.repeat(options.num_epochs).batch(options.batch_size)  # eval: one pass

  fit = training.fit_resumable

  class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      if checkpoint.manager.latest_checkpoint and int(checkpoint.step) >= int(
          os.environ.get('HARNESS_KILL_AFTER', 0)):
        os.kill(os.getpid(), 9)

  def recording_fit(model, *args, **kwargs):  # keeps the trained weights for the test
    global checkpoint  # pylint: disable=global-variable-undefined
    checkpoint = args[3]
    if os.environ.get('HARNESS_KILL') == '1':
      kwargs['callbacks'] = list(kwargs.get('callbacks') or []) + [Kill()]
    ran = fit(model, *args, **kwargs)
    np.savez(os.path.join(out, f'weights_{task}.npz'), *model.get_weights())
    print('ITERATIONS', int(model.optimizer.iterations.numpy()), 'STRATEGY',
          type(model.distribute_strategy).__name__,
          model.distribute_strategy.num_replicas_in_sync)
    return ran

  training.fit_resumable = recording_fit
  custom = {'distribution': 'auto', 'steps_per_epoch': 2,
            'clip': {'num_frames': frames, 'frame_size': list(size)}, **custom}
  run_fn = pretrain_model.run_fn if 'pretrain' in custom else trainer.run_fn
  run_fn(types.SimpleNamespace(
      custom_config=custom, transform_output='unused', train_files=['unused'],
      eval_files=['unused'],
      data_accessor=types.SimpleNamespace(tf_dataset_factory=dataset_factory),
      train_steps=custom.get('train_steps', 4), eval_steps=1,
      model_run_dir=os.environ.get('HARNESS_MODEL_RUN') or os.path.join(out, f'model_run_{task}'),
      serving_model_dir=os.path.join(out, f'serving_{task}'), base_model=None))
  print('DONE', task)


if __name__ == '__main__':
  main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 1)
