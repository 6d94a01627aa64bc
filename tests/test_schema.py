"""The curated schema validates ingested clips with TFDV and flags a wrong frame count."""
import glob
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv

from vivit_tfx import schemas
from vivit_tfx.data import ingest
from vivit_tfx.data import features


def test_ingested_clips_have_no_anomalies(clips_dir):
  stats = tfdv.generate_statistics_from_tfrecord(os.path.join(clips_dir, 'train', '*'))
  anomalies = tfdv.validate_statistics(stats, schemas.load())
  assert not anomalies.anomaly_info, anomalies


def test_wrong_frame_count_is_flagged(clips_dir, tmp_path):
  record = next(iter(tf.data.TFRecordDataset(glob.glob(os.path.join(clips_dir, 'eval', '*')))))
  example = tf.train.Example.FromString(record.numpy())
  del example.features.feature[features.FRAMES].bytes_list.value[-1]  # 79 slots, not 80
  path = str(tmp_path / 'bad.tfrecord')
  with tf.io.TFRecordWriter(path) as w:
    w.write(example.SerializeToString())
  anomalies = tfdv.validate_statistics(tfdv.generate_statistics_from_tfrecord(path),
                                       schemas.load())
  assert features.FRAMES in anomalies.anomaly_info


def test_schema_for_other_clip_lengths(tmp_path):
  assert schemas.for_frame_slots(80, str(tmp_path)) == schemas.CLIP_SCHEMA_PATH
  assert schemas.frame_slots(schemas.load()) == ingest.ClipConfig().stored_frames  # the default
  path = schemas.for_frame_slots(16, str(tmp_path))
  assert schemas.frame_slots(schemas.load(path)) == 16
