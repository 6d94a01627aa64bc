"""Fault tests: hostile inputs are all accounted for and none crashes ingestion."""
import os
import shutil

import numpy as np

from components import ingest, synthetic
from tests.conftest import TINY_CLIP


def test_hostile_inputs_are_accounted_for(video_root, tmp_path, capsys):
  root = str(tmp_path / 'videos')
  shutil.copytree(video_root, root)
  bad = synthetic.add_bad_inputs(root)  # zero-byte, truncated, text-as-mp4, .txt, unknown folder
  v = os.path.join(root, 'Violence')
  synthetic.write_video(os.path.join(v, 'one_frame.mp4'),
                        np.full((1, 48, 64, 3), 120, np.uint8), fps=10)
  synthetic.write_video(os.path.join(v, 'huge.avi'),
                        np.full((2, 2160, 3840, 3), 60, np.uint8), fps=5)
  good = sorted(f for f in os.listdir(v) if f.startswith('V_'))[0]
  shutil.copy(os.path.join(v, good), os.path.join(v, 'fight scène 名前.mp4'))
  os.mkfifo(os.path.join(v, 'pipe.mp4'))  # unreadable as a file: opening it would block
  os.makedirs(os.path.join(v, 'folder.mp4'))  # a directory with a video's name
  unreadable = os.path.join(v, 'no_permission.mp4')
  shutil.copy(os.path.join(v, good), unreadable)
  os.chmod(unreadable, 0)
  os.symlink('loop.mp4', os.path.join(v, 'loop.mp4'))

  out = str(tmp_path / 'out')
  summary = ingest.ingest(root, out, clip=TINY_CLIP, workers=2, progress=False)
  manifest = {e['path']: e for e in ingest.read_manifest(out)}

  listed = {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root)
            for f in files}
  assert set(manifest) == listed  # every input exactly once (the folder.mp4 dir holds none)
  ok = lambda name: manifest[f'Violence/{name}']['status'] == 'ok'
  assert ok('one_frame.mp4') and ok('huge.avi') and ok('fight scène 名前.mp4')
  assert 'not a regular file' in manifest['Violence/pipe.mp4']['reason']
  assert 'not a regular file' in manifest['Violence/loop.mp4']['reason']
  # As root the file is still readable; otherwise it is skipped as 'permission denied'.
  entry = manifest['Violence/no_permission.mp4']
  assert entry['status'] == 'ok' if os.geteuid() == 0 else 'permission denied' in entry['reason']
  assert len(summary.skipped) == len(bad) + 2 + (entry['status'] == 'skipped')
  assert summary.num_written == 24 + 3 + (entry['status'] == 'ok')
  assert 'Traceback' not in capsys.readouterr().err
