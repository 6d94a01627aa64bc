"""The Trainer's input_fn: validation each epoch covers the whole eval split (both classes),
training repeats and shuffles; on the real TFX data accessor and ingested clips."""
import glob
import os

import tensorflow as tf
from tfx import v1 as tfx
from tfx.components.util import tfxio_utils
from tfx.types import standard_artifacts

from vivit_tfx import schemas
from vivit_tfx.data import features
from vivit_tfx.models.trainer import clip_views, model, preprocessing


class _TransformOutput:
  """Stands in for TFTransformOutput: the curated schema, frames decoded to [0, 1] clips."""

  class raw_metadata:  # pylint: disable=invalid-name
    schema = schemas.load()

  def transform_features_layer(self):
    return lambda raw: {features.CLIP_XF: preprocessing.decode_clips(
        clip_views.central_clip(raw[features.FRAMES], 8), (32, 32))}


def _accessor(clips_dir):
  examples = standard_artifacts.Examples()
  examples.uri = clips_dir
  return tfx.components.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
      record_batch_factory=None, data_view_decode_fn=None)


def _count(clips_dir, split):
  files = glob.glob(os.path.join(clips_dir, split, '*.tfrecord'))
  return sum(1 for _ in tf.data.TFRecordDataset(files))


def test_each_validation_epoch_covers_the_whole_eval_split(clips_dir):
  pattern = [os.path.join(clips_dir, 'eval', '*')]
  dataset = model.input_fn(pattern, _accessor(clips_dir), _TransformOutput(), batch_size=2,
                           n_classes=2, training_mode=False, num_frames=8)
  n = _count(clips_dir, 'eval')
  for _ in range(2):  # two epochs: the same finite pass each time
    labels, clips = [], 0
    for x, y in dataset.take(n + 3):  # bounded: the old input repeated forever
      assert x.shape[1:] == (8, 32, 32, 3)
      labels += [int(v) for v in y.numpy().ravel()]
      clips += x.shape[0]
    assert clips == n and set(labels) == {0, 1}


def test_training_input_repeats(clips_dir):
  pattern = [os.path.join(clips_dir, 'train', '*')]
  dataset = model.input_fn(pattern, _accessor(clips_dir), _TransformOutput(), batch_size=8,
                           n_classes=2, training_mode=True, num_frames=8)
  batches = list(dataset.take(_count(clips_dir, 'train') // 8 + 2))
  assert len(batches) == _count(clips_dir, 'train') // 8 + 2
  assert {int(v) for _, y in batches for v in y.numpy().ravel()} == {0, 1}
