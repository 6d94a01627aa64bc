"""preprocessing_fn under tft_unit: JPEG frames → per-channel standardised float clips."""
import numpy as np
import tensorflow as tf
from tensorflow_transform.beam import tft_unit
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from vivit_tfx.data import features
from vivit_tfx.data.clip_example import encode_jpeg
from vivit_tfx.models.trainer import preprocessing


def _metadata(spec):
  return dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))


def _solid_frame(rgb):
  return np.full((8, 8, 3), rgb, np.uint8)


class PreprocessingFnTest(tft_unit.TransformTestCase):

  def test_decodes_resizes_and_standardises_per_channel(self):
    # Two clips of 2 grey frames (grey survives JPEG exactly): levels 50 and 150 give a
    # per-channel mean of 100 and std of 50, so the clips standardise to -1 and +1.
    colours = [(50, 50, 50), (150, 150, 150)]
    inputs = [{features.FRAMES: [encode_jpeg(_solid_frame(c), 100)] * 2, features.LABEL: [i]}
              for i, c in enumerate(colours)]
    metadata = _metadata({
        features.FRAMES: tf.io.FixedLenFeature([2], tf.string),
        features.LABEL: tf.io.FixedLenFeature([1], tf.int64)})

    def fn(x):
      return preprocessing.preprocessing_fn(x, {'image_size': [4, 4]})

    expected = [{features.CLIP_XF: np.full((2, 4, 4, 3), v, np.float32).tolist(),
                 features.LABEL: [label]} for label, v in ((0, -1.0), (1, 1.0))]
    expected_metadata = _metadata({
        features.CLIP_XF: tf.io.FixedLenFeature([2, 4, 4, 3], tf.float32),
        features.LABEL: tf.io.FixedLenFeature([1], tf.int64)})
    self.assertAnalyzeAndTransformResults(inputs, metadata, fn, expected,
                                          expected_metadata=expected_metadata)


def test_decode_clips_shape():
  frames = tf.constant([[encode_jpeg(_solid_frame((10, 20, 30)))] * 3] * 2)
  clips = preprocessing.decode_clips(frames, (6, 5))
  assert clips.shape == (2, 3, 6, 5, 3)
  np.testing.assert_allclose(clips.numpy()[0, 0, 0, 0], np.array([10, 20, 30]) / 255, atol=0.02)
