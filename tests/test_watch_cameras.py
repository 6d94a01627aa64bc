"""`vivit-tfx watch` on several cameras in one process: names, events per camera, a dead
camera that holds up no other, and one batched model call that scores as each camera alone."""
import io
import json
import os
import socket
import time

import cv2
import numpy as np
import pytest

from vivit_tfx.data import synthetic
from vivit_tfx.inference import cameras, watch
from vivit_tfx.inference.cameras import Camera

CLIP = {'num_frames': 4, 'frame_size': [16, 16], 'sample_fps': 8.0}


def test_sources_from_arguments_and_a_file(tmp_path):
  listing = tmp_path / 'cameras.txt'
  listing.write_text('# the yard\nyard=rtsp://10.0.0.7/s?channel=1\n\n  http://10.0.0.8/mjpg \n')
  assert cameras.cameras(['rtsp://h/s?channel=1']) == (Camera('', 'rtsp://h/s?channel=1'),)
  assert cameras.cameras(['door=0', '1'], str(listing)) == (
      Camera('door', '0'), Camera('cam2', '1'), Camera('yard', 'rtsp://10.0.0.7/s?channel=1'),
      Camera('cam4', 'http://10.0.0.8/mjpg'))
  assert cameras.cameras([], str(listing))[0].name == 'yard'
  with pytest.raises(ValueError, match=r'cameras.txt:2: camera name .yard. is also used at '
                     r'source 1'):
    cameras.cameras(['yard=0'], str(listing))
  (tmp_path / 'empty.txt').write_text('# nothing yet\n')
  with pytest.raises(ValueError, match='empty.txt: no sources in the file'):
    cameras.cameras([], str(tmp_path / 'empty.txt'))
  with pytest.raises(ValueError, match='no source'):
    cameras.cameras([])


class BrightnessScorer:
  """Stands in for the model: P(violence) = mean brightness of the window. Its first call is
  slow: meanwhile the windows of both file cameras come and wait together. Records the size
  of every batch it scores."""

  def __init__(self):
    self.batches = []

  def score(self, windows):
    time.sleep(0.0 if self.batches else 0.5)
    self.batches.append(len(windows))
    return [float(w.frames.mean()) / 255 for w in windows]


def _video(path, levels, fps=16.0, seconds_each=2.0):
  """A small video of flat grey segments, one brightness level (0–255) each."""
  frames = np.concatenate([np.full((int(fps * seconds_each), 48, 64, 3), v, np.uint8)
                           for v in levels])
  synthetic.write_video(str(path), frames, fps)
  return str(path)


def _refused_url() -> str:
  with socket.socket() as s:  # a port nothing listens on once this socket is closed
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return f'http://127.0.0.1:{port}/stream.mjpg'


def _model_dir(tmp_path):
  folder = tmp_path / 'model'
  os.makedirs(folder / 'assets.extra')
  (folder / 'assets.extra' / 'clip_config.json').write_text(json.dumps(CLIP))
  return str(folder)


def test_events_name_their_camera_and_a_dead_camera_stops_no_other(tmp_path):
  bright = _video(tmp_path / 'bright.avi', [20, 240, 240, 20])
  calm = _video(tmp_path / 'calm.avi', [20, 20, 20, 20])
  config = watch.WatchConfig(
      source=bright, model_dir=_model_dir(tmp_path), out_dir=str(tmp_path / 'watch'),
      reconnect_s=4.0, cameras=(Camera('yard', bright), Camera('dead', _refused_url()),
                                Camera('hall', calm)))
  said = []  # stdout records and log lines, in the order they came

  class Out:
    def write(self, text):
      said.extend(('record', json.loads(l)) for l in text.splitlines() if l.strip())

    def flush(self):
      pass

  scorer = BrightnessScorer()
  summary = watch.watch(config, stdout=Out(), log=lambda m: said.append(('log', m)),
                        scorer=scorer)
  records = [r for kind, r in said if kind == 'record']
  events = [r for r in records if r['event'] in ('start', 'end')]
  # The bright camera's event, and only its: named, its snapshot in its own folder.
  assert [(e['camera'], e['event'], e['id']) for e in events] == [('yard', 'start', 1),
                                                                 ('yard', 'end', 1)], events
  assert 2.0 <= events[1]['start_s'] <= 3.0 and events[1]['end_s'] <= 6.5, events
  for e in events:
    assert os.path.dirname(e['snapshot']) == os.path.join(summary['snapshots'], 'yard')
    assert cv2.imread(e['snapshot']).mean() > 200
  per_camera = {s['camera']: s for s in summary['per_camera']}
  assert [r.get('camera') for r in records if r['event'] == 'summary'] == [
      'yard', 'dead', 'hall', None]
  # Every window of the two files was scored; the dead camera kept trying, then gave up,
  # and the bright camera's event came out before it did.
  for name in ('yard', 'hall'):
    s = per_camera[name]
    assert (s['frames_read'], s['windows_dropped']) == (128, 0), s
    assert s['windows_scored'] == 64 // 8, s  # 8 s at 8 fps: a window every 8 frames
  dead = per_camera['dead']
  assert dead['frames_read'] == 0 and dead['reconnects'] >= 1 and dead['gave_up'], dead
  gave_up = next(i for i, (kind, m) in enumerate(said) if kind == 'log' and 'gave up' in m)
  end = next(i for i, (kind, r) in enumerate(said) if kind == 'record' and r['event'] == 'end')
  assert end < gave_up, said
  assert 'watch: dead (http://127.0.0.1:' in said[gave_up][1]
  # Windows of both cameras went to the model together.
  assert max(scorer.batches) == 2 and summary['model_calls'] == len(scorer.batches) < (
      summary['windows_scored']), scorer.batches


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
  """An untrained tiny ViViT (random weights) exported as a pushed model: its scores differ
  from clip to clip."""
  from vivit_tfx.bench.watch_streams import export_untrained  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.network.vivit_config import ViViTConfig  # pylint: disable=g-import-not-at-top
  config = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, 8, 8),
                       hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, warmup_steps=0)
  return export_untrained(config, str(tmp_path_factory.mktemp('tiny') / 'model'), 8.0, seed=1)


def test_one_batched_call_scores_as_each_camera_alone(tiny_model):
  scorer = watch.Scorer(tiny_model, (4, 16, 16))
  rng = np.random.default_rng(0)
  windows = [watch.Window(rng.integers(0, 256, (4, 16, 16, 3), np.uint8), 0.0, 0.5, 0.0, 0.0,
                          lambda: np.zeros((16, 16, 3), np.uint8)) for _ in range(5)]
  batched = scorer.score(windows)
  alone = [scorer(w) for w in windows]
  np.testing.assert_allclose(batched, alone, atol=1e-6)
  assert np.ptp(alone) > 1e-3, alone  # the windows' scores differ: a mix-up would show


def test_a_camera_that_cannot_be_one_is_named_in_one_line(tmp_path, capsys):
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  good = _video(tmp_path / 'good.avi', [20])
  listing = tmp_path / 'cameras.txt'
  listing.write_text(f'door={good}\ngate={tmp_path / "missing.mp4"}\n')
  for argv, name in ((['watch', good, str(tmp_path / 'missing.mp4')], 'cam2'),
                     (['watch', '--sources', str(listing)], 'gate')):
    assert cli.main(argv + ['--model-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'vivit-tfx watch: error: {name}: '), err
    assert 'no such file' in err and len(err.strip().splitlines()) == 1, err


def test_a_model_that_fails_stops_every_camera_and_says_why(tmp_path):
  class Failing(BrightnessScorer):
    def score(self, windows):
      if self.batches:
        raise RuntimeError('out of memory')
      return super().score(windows)

  videos = [_video(tmp_path / f'{k}.avi', [20, 240]) for k in range(2)]
  config = watch.WatchConfig(source=videos[0], model_dir=_model_dir(tmp_path),
                             out_dir=str(tmp_path / 'watch'),
                             cameras=tuple(Camera(f'c{k}', v) for k, v in enumerate(videos)))
  with pytest.raises(ValueError, match='scoring failed, every camera stopped: RuntimeError: '
                     'out of memory'):
    watch.watch(config, stdout=io.StringIO(), log=lambda m: None, scorer=Failing())


def test_the_compiled_resize_gives_ingestions_pixels():
  from vivit_tfx.data.frames import resize_and_crop_array  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  for shape in ((72, 128, 3), (120, 90, 3), (16, 16, 3)):
    frame = rng.integers(0, 256, shape, np.uint8)
    np.testing.assert_array_equal(watch.resizer((16, 16))(frame),
                                  resize_and_crop_array(frame, (16, 16)))
