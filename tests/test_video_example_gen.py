"""VideoExampleGen's executor reads raw videos on Beam into the same clip records as ingest,
splits them exactly as ingest does (after decoding, group-safe), and skips bad files."""
import glob
import os
import shutil

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from vivit_tfx.data import ingest, synthetic
from vivit_tfx.components.video_example_gen import executor
from vivit_tfx.data import features


def test_executor_reads_videos_into_the_splits_of_ingest(video_root, clips_dir, tmp_path):
  root = str(tmp_path / 'videos')
  shutil.copytree(video_root, root)
  synthetic.add_bad_inputs(root)
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / 'out')
  clip = ingest.ClipConfig(4, (16, 16))
  exec_properties = executor.standalone_exec_properties(root, clip)
  executor.Executor().Do({}, {'examples': [examples]}, exec_properties)
  ids = {}
  for split in ingest.SPLITS:
    files = glob.glob(os.path.join(artifact_utils.get_split_uri([examples], split), '*'))
    for record in tf.data.TFRecordDataset(files, compression_type='GZIP'):
      ex = tf.train.Example.FromString(record.numpy())
      assert len(ex.features.feature[features.FRAMES].bytes_list.value) == clip.stored_frames
      vid = ex.features.feature[features.VIDEO_ID].bytes_list.value[0].decode()
      assert vid not in ids
      ids[vid] = split
  # 24 good videos; the truncated, text and zero-byte .mp4 files are skipped, not fatal.
  assert len(ids) == 24
  # Same test set as `vivit-tfx ingest` of the same folder (bad files take no split slot).
  ingested = {e['video_id']: e['split'] for e in ingest.read_manifest(clips_dir)
              if e['status'] == 'ok'}
  assert ids == ingested
