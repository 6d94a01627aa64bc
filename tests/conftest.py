"""Shared fixtures: tiny synthetic videos and ingested clips, made once per test session."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top

from components import ingest, synthetic

# Tiny everything: CPU-only CI on 2 cores.
TINY_CLIP = ingest.ClipConfig(num_frames=8, frame_size=(32, 32))


@pytest.fixture(scope='session')
def video_root(tmp_path_factory):
  """24 synthetic videos (mp4 + avi, some shorter than 8 frames) in the RLVS layout."""
  root = str(tmp_path_factory.mktemp('videos'))
  synthetic.generate(root, synthetic.SyntheticConfig(num_clips=24, seed=7), workers=2,
                     progress=False)
  return root


@pytest.fixture(scope='session')
def clips_dir(video_root, tmp_path_factory):
  """The tiny videos ingested to split TFRecords (no bad inputs)."""
  out = str(tmp_path_factory.mktemp('clips'))
  ingest.ingest(video_root, out, clip=TINY_CLIP, workers=2, progress=False)
  return out
