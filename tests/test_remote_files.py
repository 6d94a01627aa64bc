"""Inputs and pushed models under a URI, not a local path: TF's `ram://` filesystem stands in
for gs:// / s3:// (tf.io.gfile reads it; OpenCV and h5py cannot)."""
import glob
import json
import os
import tempfile
import uuid

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from vivit_tfx.components.video_example_gen import executor
from vivit_tfx.data import ingest, remote_files
from vivit_tfx.data import features
from vivit_tfx.inference import predict
from vivit_tfx.models.trainer.export import CLIP_CONFIG_FILE


def _ram(name):
  return f'ram://{uuid.uuid4().hex}/{name}'


def _upload(local_dir, uri):
  for folder, _, files in os.walk(local_dir):
    target = os.path.join(uri, os.path.relpath(folder, local_dir)).rstrip('.').rstrip('/')
    tf.io.gfile.makedirs(target)
    for name in files:
      tf.io.gfile.copy(os.path.join(folder, name), f'{target}/{name}')


def _our_temp_folders():
  return set(glob.glob(os.path.join(tempfile.gettempdir(), 'vivit_tfx_*')))


def test_local_copy_of_a_ram_file_is_removed_after():
  uri = _ram('a/clip.weights.h5')
  tf.io.gfile.makedirs(os.path.dirname(uri))
  with tf.io.gfile.GFile(uri, 'wb') as f:
    f.write(b'\x00payload')
  before = _our_temp_folders()
  with remote_files.local_copy(uri) as local:
    assert os.path.isfile(local) and local.endswith('clip.weights.h5')
    with open(local, 'rb') as f:
      assert f.read() == b'\x00payload'
  assert not os.path.exists(local) and _our_temp_folders() == before
  with remote_files.local_copy('/some/local/path.mp4') as same:
    assert same == '/some/local/path.mp4'


def test_video_example_gen_reads_videos_under_a_uri(video_root, tmp_path):
  videos = _ram('videos')
  _upload(video_root, videos)
  with tf.io.gfile.GFile(f'{videos}/Fight/broken.mp4', 'wb') as f:
    f.write(b'not a video')
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'out')
  clip = ingest.ClipConfig(4, (16, 16))
  exec_properties = executor.standalone_exec_properties(videos, clip,
                                                        split_names=('train', 'eval'))
  before = _our_temp_folders()
  executor.Executor().Do({}, {'examples': [examples]}, exec_properties)
  ids = set()
  for split in ('train', 'eval'):
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*'))
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
      ex = tf.train.Example.FromString(record.numpy())
      assert len(ex.features.feature[features.FRAMES].bytes_list.value) == clip.stored_frames
      ids.add(ex.features.feature[features.VIDEO_ID].bytes_list.value[0])
  assert len(ids) == 24  # every video read from ram://, the broken one skipped
  assert _our_temp_folders() == before  # each local copy deleted


def test_predict_finds_the_newest_pushed_model_under_a_uri():
  serving = _ram('serving')
  for version in ('9', '12', 'tmp'):
    tf.io.gfile.makedirs(f'{serving}/vivit/{version}/assets.extra')
  with tf.io.gfile.GFile(f'{serving}/vivit/12/{CLIP_CONFIG_FILE}', 'w') as f:
    f.write(json.dumps({'num_frames': 6, 'frame_size': [24, 32]}))
  newest = predict.newest_version(serving, 'vivit')
  assert newest == f'{serving}/vivit/12'
  clip = predict.clip_config_of(newest)
  assert clip.num_frames == 6 and tuple(clip.frame_size) == (24, 32)
  with pytest.raises(predict.NoModelError):
    predict.clip_config_of(f'{serving}/vivit/9')
  with pytest.raises(predict.NoModelError):
    predict.newest_version(serving, 'absent')


def test_attention_rebuilds_the_keras_model_from_a_uri(tmp_path):
  from vivit_tfx.models.checkpoints.initialise import initialised_vivit  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.network.vivit_config import ViViTConfig  # pylint: disable=g-import-not-at-top
  config = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, 8, 8),
                       hidden_size=16, num_layers=1, num_heads=2, mlp_dim=16)
  model = initialised_vivit(config)
  model_dir = _ram('serving/vivit/1')
  tf.saved_model.save(model, model_dir)  # the SavedModel's variables are the weights
  tf.io.gfile.makedirs(f'{model_dir}/assets.extra')
  with tf.io.gfile.GFile(f'{model_dir}/{CLIP_CONFIG_FILE}', 'w') as f:
    f.write(json.dumps({'num_frames': 4, 'frame_size': [16, 16], 'vivit': config.to_dict()}))
  rebuilt = predict.keras_model(model_dir)
  for a, b in zip(model.get_weights(), rebuilt.get_weights()):
    assert (a == b).all()


def test_report_reads_the_manifest_under_a_uri():
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  clips = _ram('clips')
  tf.io.gfile.makedirs(clips)
  with tf.io.gfile.GFile(f'{clips}/manifest.jsonl', 'w') as f:
    f.write(json.dumps({'split': 'train', 'label': 1, 'status': 'ok', 'duration_s': 2.0,
                        'path': 'Fight/a.mp4'}) + '\n')
  summary = report.data_summary(clips)
  assert summary is not None and summary['counts'][('train', 1)] == 1
