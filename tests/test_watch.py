"""`vivit-tfx watch`: live detection on a loopback MJPEG camera, webhooks, reconnection."""
import datetime
import io
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from vivit_tfx.bench.mjpeg_stream import MjpegStream
from vivit_tfx.data import sampling, synthetic
from vivit_tfx.inference import predict, watch


# --- the decision logic, without a model ----------------------------------------------------
def _windows(scores, stride=1.0, span=2.0):
  blank = np.zeros((1, 1, 3), np.uint8)
  return [watch.Window(blank[None], i * stride, i * stride + span, 0.0, 1000.0 + i * stride,
                       lambda: blank, score=s) for i, s in enumerate(scores)]


def _events(scores, **changes):
  config = watch.WatchConfig(source='x', model_dir='x', **changes)
  out = []
  detector = watch.Detector(config, lambda record, peak: out.append((record, peak.score)))
  for w in _windows(scores):
    detector.update(w)
  detector.finish()
  return out


def test_hysteresis_smoothing_and_minimum_length():
  # One spike does not lift a mean of 3 over 0.6; a run of highs does, and dips inside the
  # run (above the stop threshold on average) do not split it.
  events = _events([0, 0, 0.9, 0, 0, 0, 0.9, 0.95, 0.3, 0.9, 0.8, 0.1, 0, 0, 0])
  assert [(r['event'], r['id']) for r, _ in events] == [('start', 1), ('end', 1)]
  end = events[1][0]
  assert (end['start_s'], end['end_s'], end['peak_score']) == (6.0, 12.0, 0.95)
  assert events[1][1] == 0.95 and end['start_wall'].startswith('1970-01-01T00:16:44')
  # Stop threshold: a mean that stays at 0.5 keeps the event open until the stream ends.
  events = _events([0.9, 0.9, 0.9, 0.5, 0.5, 0.5], average=1)
  assert [r['event'] for r, _ in events] == ['start', 'end'] and events[1][0]['end_s'] == 4.0
  # Minimum length: a 2 s event is dropped when 3 s are required; EMA smoothing works too.
  assert _events([0, 0.9, 0, 0, 0], average=1, min_event_s=3.0) == []
  assert len(_events([0, 0.9, 0.9, 0.9, 0, 0, 0], ema=0.5)) == 2


def test_an_events_records_agree_on_its_times():
  config = watch.WatchConfig(source='x', model_dir='x', average=1)
  out = []
  detector = watch.Detector(config, lambda record, peak: out.append(record))
  for i, w in enumerate(_windows([0, 0.9, 0.9, 0.9, 0, 0])):
    w.wall += 0.037 * i  # scoring lags the stream a little more at each window
    detector.update(w)
  start, end = out
  assert (start['event'], end['event']) == ('start', 'end')
  assert start['start_wall'] == end['start_wall']


def _refused_url() -> str:
  with socket.socket() as s:  # a port nothing listens on once this socket is closed
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  return f'http://127.0.0.1:{port}/hook'


def test_webhook_counts_every_event_lost_to_a_refused_address():
  lines = []
  hook = watch.Webhook(_refused_url(), timeout_s=0.5, retries=3, log=lines.append)
  hook.post({'id': 1, 'event': 'start'})
  hook.post({'id': 1, 'event': 'end'})
  hook.close(time.monotonic() + 0.3)  # shorter than the retries' back-off: cut at shutdown
  assert (hook.sent, hook.failed + hook.dropped) == (0, 2), (hook.sent, hook.failed,
                                                               hook.dropped)
  assert hook.dropped >= 1 and len(lines) == 2, lines
  assert any('event 1 end dropped: still undelivered at shutdown' in l for l in lines), lines
  hook = watch.Webhook(_refused_url(), timeout_s=0.5, retries=0, log=lines.append)
  hook.post({'id': 2, 'event': 'start'})
  hook.close(time.monotonic() + 5)
  assert (hook.sent, hook.failed, hook.dropped) == (0, 1, 0)
  assert 'event 2 start failed: not delivered after 1 tries' in lines[-1]


def test_sampler_keeps_the_model_rate():
  sampler = sampling.StreamSampler(4.0, 30.0)  # every 8th frame: 3.75 fps
  kept = [t for t in np.arange(0, 10, 1 / 30) if sampler.keep(t)]
  assert len(kept) == 38 and np.allclose(np.diff(kept), 8 / 30)


def test_mailbox_replaces_unscored_windows_for_live_sources():
  box = watch.Mailbox()
  for w in _windows([0.1, 0.2, 0.3]):
    box.put(w, wait=False)
  assert box.replaced == 2 and box.get().score == 0.3
  box.close()
  assert box.get() is None


# --- end to end on a live stream --------------------------------------------------------------
class Receiver:
  """A webhook endpoint on 127.0.0.1 that records every JSON body POSTed to it."""

  def __init__(self):
    self.events = []
    received = self.events

    class Handler(http.server.BaseHTTPRequestHandler):
      def log_message(self, *args):
        pass

      def do_POST(self):  # pylint: disable=invalid-name
        received.append(json.loads(self.rfile.read(int(self.headers['Content-Length']))))
        self.send_response(204)
        self.end_headers()

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self.server.server_address[1]}/hook'
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def close(self):
    self.server.shutdown()
    self.server.server_close()


def _unix(iso: str) -> float:
  return datetime.datetime.fromisoformat(iso).timestamp()


@pytest.mark.e2e
def test_watch_a_live_stream_that_drops(trained_run, tmp_path):
  config, _ = trained_run
  model_dir = predict.newest_version(config.serving_dir, config.model_name)
  video = str(tmp_path / 'camera.mp4')
  truth = synthetic.long_video(video, [0, 1, 0, 0, 1, 0], segment_s=4.0, seed=5)
  receiver = Receiver()
  dead = socket.socket()  # accepts connections (the kernel does) but never answers
  dead.bind(('127.0.0.1', 0))
  dead.listen(16)
  dead_url = f'http://127.0.0.1:{dead.getsockname()[1]}/hook'
  lines = []  # (arrival time, JSON line)
  camera = MjpegStream(video, cut_at_s=10.0, gap_s=2.0)
  with camera as url:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'vivit_tfx.cli', 'watch', url, '--model-dir', model_dir,
         '--out-dir', str(tmp_path / 'watch'), '--webhook', dead_url, '--webhook',
         receiver.url, '--webhook-timeout', '30', '--reconnect-s', '4', '--max-seconds', '120'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
      lines.append((time.time(), json.loads(line)))
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, stderr
  receiver.close()
  dead.close()
  records = [r for _, r in lines]
  summary = records[-1]
  events = [r for r in records if r['event'] in ('start', 'end')]
  ends = [r for r in events if r['event'] == 'end']
  assert summary['event'] == 'summary' and summary['reconnects'] >= 1, (summary, stderr)
  assert 'reconnected' in stderr and camera.connections >= 2

  # Every violent segment gives an event; ≥ 60 % of event time is violent (in video time).
  spans = [(camera.video_time(_unix(e['start_wall'])), camera.video_time(_unix(e['end_wall'])))
           for e in ends]
  violent = [(t['start_s'], t['end_s']) for t in truth if t['label'] == 1]
  overlap = lambda a, b: max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  for v in violent:
    assert any(overlap(v, s) > 0 for s in spans), (v, spans, events)
  detected = sum(s[1] - s[0] for s in spans)
  assert sum(overlap(v, s) for v in violent for s in spans) >= 0.6 * detected, (spans, truth)
  for e in events:
    assert cv2.imread(e['snapshot']) is not None
  # The live webhook got every event; the dead one delayed none of them.
  assert [(e['id'], e['event']) for e in receiver.events] == [(e['id'], e['event'])
                                                             for e in events]
  delays = [arrival - _unix(r['wall']) for arrival, r in lines if r['event'] != 'summary']
  assert max(delays) < 8.0, delays  # a blocking hook would add ≥ 30 s
  assert summary['webhooks'][0]['sent'] == 0 and summary['webhooks'][1]['sent'] == len(events)


def test_a_source_that_cannot_be_one_is_a_clear_error(tmp_path, capsys):
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  text = tmp_path / 'notes.mp4'
  text.write_text('not a video')
  for source, words in ((str(tmp_path / 'missing.mp4'), 'no such file'),
                        (str(text), 'not a readable video')):
    assert cli.main(['watch', source, '--model-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('vivit-tfx watch: error: ') and words in err and len(
        err.strip().splitlines()) == 1, err


def test_sampling_rule_comes_from_the_model(tmp_path):
  from vivit_tfx.models.trainer.export import CLIP_CONFIG_FILE  # pylint: disable=g-import-not-at-top
  os.makedirs(tmp_path / 'assets.extra')
  clip = {'num_frames': 16, 'frame_size': [32, 48]}
  (tmp_path / CLIP_CONFIG_FILE).write_text(json.dumps({**clip, 'sample_fps': 5.0}))
  assert watch.sampling_rule(str(tmp_path)) == (16, (32, 48), 5.0, '')
  (tmp_path / CLIP_CONFIG_FILE).write_text(json.dumps(clip))  # older models: T over 2 s
  t, size, fps, note = watch.sampling_rule(str(tmp_path))
  assert (t, size, fps) == (16, (32, 48), 8.0) and 'no sample_fps' in note


# --- drift against the training split the model carries ---------------------------------------
@pytest.fixture(scope='module')
def carrying_model(tmp_path_factory):
  """A pushed model (scan_fixtures' motion model: T = 4, 32 x 32, 5 fps) carrying the
  statistics of its train split (8 videos lit from above), as the Trainer's export writes
  them."""
  from tests import scan_fixtures  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import ingest  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import drift_stats  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('carrying')
  model = scan_fixtures.pushed_model(str(root / 'serving'), 4, (32, 32), 5.0)
  clips = scan_fixtures.training_clips(
      scan_fixtures.footage_set(str(root / 'train')), str(root / 'clips'),
      ingest.ClipConfig(num_frames=4, frame_size=(32, 32), sample_fps=5.0, max_duration_s=4.0))
  drift_stats.write_model_reference(model, [str(root / 'clips' / 'train' / '*')])
  return model


def test_watch_prints_drift_at_most_once_per_interval(carrying_model, tmp_path):  # pylint: disable=redefined-outer-name
  from tests import scan_fixtures  # pylint: disable=g-import-not-at-top
  scorer = watch.Scorer(carrying_model, (4, 32, 32))
  found = {}
  for kind in ('train', 'dark', 'upside-down'):
    # The training videos' scenes one after another, twice over (64 s), as a camera sees them.
    video = scan_fixtures.footage_set_joined(str(tmp_path / f'{kind}.mp4'), kind, repeat=2)
    out, lines = io.StringIO(), []
    summary = watch.watch(watch.WatchConfig(
        source=video, model_dir=carrying_model, out_dir=str(tmp_path / 'watch'),
        drift_interval_s=8.0, drift_windows=32), stdout=out, log=lines.append, scorer=scorer)
    drifts = [r for r in map(json.loads, out.getvalue().splitlines()) if r['event'] == 'drift']
    said = [l for l in lines if l.startswith('watch: drift: ') and 'divergence' in l and
            'every' not in l]
    assert [l.split(':')[2].strip() for l in said] == [r['feature'] for r in drifts], said
    # 64 windows, a check of the last 32: when they are there (32 s), then every 8 s.
    checks = summary['drift']['checks']
    assert 4 <= checks <= 5, summary
    for feature in {r['feature'] for r in drifts}:
      ends = [r['end_s'] for r in drifts if r['feature'] == feature]
      assert len(ends) <= checks and all(b - a >= 8.0 for a, b in zip(ends, ends[1:])), ends
      assert ends[0] >= 32.0 and {r['windows'] for r in drifts} == {32}
    assert summary['drift']['drifted'] == {
        f: sum(r['feature'] == f for r in drifts) for f in {r['feature'] for r in drifts}}
    found[kind] = {r['feature'] for r in drifts}
  assert found['train'] == set()
  assert {'brightness', 'contrast'} <= found['dark']
  assert 'top_minus_bottom' in found['upside-down'] and 'brightness' not in found['upside-down']
  assert summary['drift']['drifted']['top_minus_bottom'] == checks  # every check says it


def test_drift_features_are_of_the_pixels_the_model_sees():
  """The training statistics are of stored JPEG clips; a camera's features are taken after the
  same round trip (before, raw frames: a lower motion energy, read as drift)."""
  from vivit_tfx.data import clip_example, drift_stats  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import watch_drift  # pylint: disable=g-import-not-at-top

  class Check:
    submitted = []

    def submit(self, camera, rows, start_s, end_s, wall):
      self.submitted.append(rows)

  rng = np.random.default_rng(0)
  scene = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (5, 5), 0)
  frames = np.stack([np.roll(scene, k, axis=1) for k in range(4)])  # [T, H, W, 3]
  camera = watch_drift.CameraDrift('', Check(), windows=2, interval_s=1.0, jpeg_quality=90)
  camera.add(frames, 0.25, 0.0, 1.0, 0.0)
  camera.add(frames, 0.75, 1.0, 2.0, 0.0)
  rows = Check.submitted[-1]
  served = drift_stats.clip_features(clip_example.decode_jpegs(
      [clip_example.encode_jpeg(f, 90) for f in frames]))
  assert rows[0]['motion_energy'] == pytest.approx(served['motion_energy'])
  assert rows[0]['motion_energy'] != pytest.approx(
      drift_stats.clip_features(frames)['motion_energy'])
  assert [r['score'] for r in rows] == [0.25, 0.75]


def test_watch_says_when_the_model_carries_no_training_statistics(tmp_path):
  model = tmp_path / 'model'
  os.makedirs(model / 'assets.extra')
  (model / 'assets.extra' / 'clip_config.json').write_text(json.dumps(
      {'num_frames': 4, 'frame_size': [16, 16], 'sample_fps': 8.0}))
  video = str(tmp_path / 'grey.avi')
  synthetic.write_video(video, np.full((64, 48, 64, 3), 90, np.uint8), 16.0)

  class Constant:
    def score(self, windows):
      return [0.1] * len(windows)

  lines = []
  summary = watch.watch(watch.WatchConfig(source=video, model_dir=str(model),
                                          out_dir=str(tmp_path / 'watch'), drift_windows=2),
                        stdout=io.StringIO(), log=lines.append, scorer=Constant())
  assert 'drift' not in summary and summary['windows_scored'] >= 2
  assert [l for l in lines if 'drift' in l] == [
      'watch: drift: not checked: the model carries no training split statistics '
      '(assets.extra/drift_reference.stats.pbtxt: exported before models carried them)']
  with pytest.raises(ValueError,
                     match=r'--drift-windows must be at least 2, got 1; --drift-threshold'):
    watch.watch(watch.WatchConfig(source=video, model_dir=str(model), drift_windows=1,
                                  drift_threshold=0), log=lines.append, scorer=Constant())
