"""`vivit-tfx scan`: the Beam scan equals the timeline, resumes, lists bad videos, runs on
cluster runners' options, and reports drift from the training split."""
import csv
import json
import os
import re
import shlex

import pytest

from tests import scan_fixtures
from tests.test_kfp_metadata import kfp_store  # pylint: disable=unused-import
from vivit_tfx import cli
from vivit_tfx.cli import scan as scan_cli
from vivit_tfx.data import drift_stats, ingest
from vivit_tfx.inference import predict, timeline
from vivit_tfx.scan import drift, ledger, options, scan

CLIP = ingest.ClipConfig(num_frames=4, frame_size=(32, 32), sample_fps=5.0, max_duration_s=4.0)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  return scan_fixtures.pushed_model(str(tmp_path_factory.mktemp('serving')), CLIP.num_frames,
                                    CLIP.frame_size, CLIP.sample_fps)


@pytest.fixture
def quick_plots(monkeypatch):
  """Timelines drawn as a stub file (matplotlib takes about 1 s a figure here): for the tests
  about something else."""
  def plot(windows, found, threshold, path, *args, **kwargs):
    with open(path, 'wb') as f:
      f.write(b'png')
    return path
  monkeypatch.setattr(timeline, 'plot', plot)


def _config(input_, out, model_dir, **changes):
  return options.ScanConfig(input=str(input_), out=str(out), model_dir=model_dir, workers=1,
                            **changes)


def _rows(out):
  with open(os.path.join(out, scan.CSV_NAME)) as f:
    return list(csv.DictReader(f))


def test_a_scan_equals_the_timeline(model, tmp_path, monkeypatch):
  videos = tmp_path / 'archive'
  os.makedirs(videos / 'cam1')
  long = scan_fixtures.footage(str(videos / 'cam1' / 'long.mp4'), (0, 1, 1, 0), seed=1)
  short = scan_fixtures.footage(str(videos / 'short.mp4'), (1,), seed=2)
  decoded = []
  stream_windows = timeline.stream_windows

  def counted(path, windows, size, seek=False):
    decoded.append((os.path.basename(path), len(windows), seek))
    return stream_windows(path, windows, size, seek)

  monkeypatch.setattr(timeline, 'stream_windows', counted)
  summary = scan.run(_config(videos, tmp_path / 'out', model, range_s=3.0), echo=lambda _: None)
  assert summary.scored == 2 and not summary.failed
  # The 12 s video (12 windows) was four work items of 3 s of windows, decoded with seeking.
  assert sorted(n for name, n, seek in decoded if name == 'long.mp4' and seek) == [3, 3, 3, 3]
  rows = {r['path']: r for r in _rows(tmp_path / 'out')}
  for video in (long, short):
    expected = timeline.run(video, model, str(tmp_path / 'timeline'), stride_s=1.0)
    got = json.load(open(rows[video]['json']))
    assert [w['start_s'] for w in got['windows']] == [w['start_s'] for w in expected['windows']]
    assert got['windows'] == pytest.approx(expected['windows'], abs=2e-4)
    assert got['segments'] == pytest.approx(expected['segments'], abs=2e-4)
    assert float(rows[video]['top_score']) == pytest.approx(
        max(w['score'] for w in expected['windows']), abs=2e-4)
    flagged = sum(s['end_s'] - s['start_s'] for s in expected['segments'])
    assert float(rows[video]['flagged_s']) == pytest.approx(flagged, abs=1e-3)
    assert os.path.getsize(rows[video]['png']) > 1000
  assert json.load(open(rows[long]['json']))['segments']  # the violent middle was flagged


def test_a_rerun_skips_what_it_scored_and_a_killed_scan_resumes(model, tmp_path, monkeypatch,
                                                                quick_plots):
  videos, out = tmp_path / 'archive', tmp_path / 'out'
  os.makedirs(videos)
  a, b = (scan_fixtures.footage(str(videos / f'{n}.mp4'), (i % 2,), seed=i)
          for i, n in enumerate('ab'))
  first = scan.run(_config(videos, out, model), echo=lambda _: None)
  assert (first.scored, first.already) == (2, 0)
  c = scan_fixtures.footage(str(videos / 'c.mp4'), (1, 0), seed=3)
  describe = timeline.describe

  def killed_at_c(path, *args):
    if path.endswith('c.mp4'):
      raise RuntimeError('killed')
    return describe(path, *args)

  monkeypatch.setattr(timeline, 'describe', killed_at_c)
  (out / ledger.VIDEOS / f'{ledger.TEMP_PREFIX}1234-c.timeline.png').write_bytes(b'half')
  with pytest.raises(Exception, match='killed'):
    scan.run(_config(videos, out, model), echo=lambda _: None)
  assert not any(n.startswith('c.') for n in os.listdir(out / ledger.VIDEOS))
  monkeypatch.setattr(timeline, 'describe', describe)
  resumed = scan.run(_config(videos, out, model), echo=lambda _: None)
  assert (resumed.scored, resumed.already, resumed.failed) == (1, 2, [])  # c only
  assert sorted(os.listdir(out / ledger.VIDEOS)) == sorted(
      f'{n}.{kind}' for n in 'abc' for kind in ('segments.json', 'timeline.png'))
  statuses = {os.path.basename(r['path']): r['status'] for r in _rows(out)}
  assert statuses == {'a.mp4': 'already scored', 'b.mp4': 'already scored', 'c.mp4': 'scored'}
  os.utime(a, (1, 1))  # the video changed: scored again
  again = scan.run(_config(videos, out, model), echo=lambda _: None)
  assert (again.scored, again.already) == (1, 2)


def test_an_unreadable_video_is_listed_and_the_others_finish(model, tmp_path, capsys):
  videos, out = tmp_path / 'archive', tmp_path / 'out'
  os.makedirs(videos)
  good = scan_fixtures.footage(str(videos / 'good.mp4'), (1,), seed=4)
  (videos / 'text.mp4').write_text('not a video')
  (videos / 'empty.avi').write_bytes(b'')
  (videos / 'cut.mp4').write_bytes(open(good, 'rb').read()[:3000])  # a copy cut short
  (videos / 'notes.txt').write_text('hello')
  code = cli.main(['scan', str(videos), '--out', str(out), '--model-dir', model,
                   '--workers', '1'])
  err = capsys.readouterr().err
  assert code == 1
  assert f'{videos / "text.mp4"}: skipped: not a readable video' in err
  assert f'{videos / "empty.avi"}: skipped: empty file (0 bytes)' in err
  rows = {os.path.basename(r['path']): r for r in _rows(out)}
  assert rows['good.mp4']['status'] == 'scored' and float(rows['good.mp4']['top_score']) > 0.5
  assert rows['text.mp4']['status'] == 'failed' and 'not a readable video' in rows[
      'text.mp4']['reason']
  assert rows['notes.txt']['status'] == 'skipped'
  assert rows['cut.mp4']['status'] == 'failed' and rows['cut.mp4']['reason']
  assert err.count(': skipped: ') == 3  # one line per unreadable video
  assert os.path.exists(out / 'videos' / 'good.segments.json')
  assert [v.path for v in ledger.list_videos(str(videos / 'g*.mp4'))['videos']] == [good]
  # Settings out of range: one line naming them, before anything runs.
  assert cli.main(['scan', str(videos), '--out', str(tmp_path / 'x'), '--model-dir', model,
                   '--stride-s', '0', '--threshold', '2']) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and '--stride-s must be positive' in err[0] and '--threshold' in err[0]
  assert not os.path.exists(tmp_path / 'x')
  # A user's file where the CSV would go is left alone: one line, nothing written.
  user = tmp_path / 'mine'
  os.makedirs(user)
  (user / scan.CSV_NAME).write_text('my numbers')
  assert cli.main(['scan', str(videos), '--out', str(user), '--model-dir', model]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'was not written by vivit-tfx' in err[0]
  assert (user / scan.CSV_NAME).read_text() == 'my numbers' and os.listdir(user) == [
      scan.CSV_NAME]


def _documented_scans():
  """The `vivit-tfx scan` commands in docs/live-and-serving.md's cluster section."""
  doc = open(os.path.join(os.path.dirname(__file__), '..', 'docs', 'live-and-serving.md')).read()
  commands = re.findall(r'^vivit-tfx scan (.+?)(?<!\\)$', doc.replace('\\\n', ' '), re.M)
  return {re.search(r'--runner=(\w+)', c).group(1): shlex.split(c) for c in commands
          if '--runner=' in c}


def test_cluster_runner_options_parse():
  from apache_beam.options import pipeline_options as po  # pylint: disable=g-import-not-at-top
  documented = _documented_scans()
  assert set(documented) >= {'DataflowRunner', 'FlinkRunner'}
  parser = cli.build_parser()
  for runner, argv in documented.items():
    args = parser.parse_args(['scan', *argv])
    opts = options.pipeline_options(scan_cli.config_from_args(args, 'gs://b/serving/1'))
    assert opts.view_as(po.StandardOptions).runner == runner
    assert '--direct_num_workers' not in ' '.join(options.beam_arguments(
        scan_cli.config_from_args(args, '')))  # a cluster runner: no DirectRunner workers
    if runner == 'DataflowRunner':
      cloud = opts.view_as(po.GoogleCloudOptions)
      assert cloud.project and cloud.region and cloud.temp_location.startswith('gs://')
      assert opts.view_as(po.WorkerOptions).sdk_container_image
    else:
      assert opts.view_as(po.FlinkRunnerOptions).flink_master
  local = options.beam_arguments(options.ScanConfig('v', 'o', 'm', workers=2))
  direct = po.PipelineOptions(local).view_as(po.DirectOptions)
  assert (direct.direct_running_mode, direct.direct_num_workers) == ('multi_processing', 2)


@pytest.fixture(scope='module')
def drift_footage(tmp_path_factory):
  """{kind: a folder of 8 videos} for training-like, dark and upside-down footage, and the
  training videos ingested as a train split ('clips')."""
  root = tmp_path_factory.mktemp('drift')
  found = {kind: scan_fixtures.footage_set(str(root / kind), kind)
           for kind in ('train', 'dark', 'upside-down')}
  found['clips'] = scan_fixtures.training_clips(found['train'], str(root / 'clips'), CLIP)
  return found


def _drifted(config, lines):
  """Scans; the features that drifted, checked against its lines, CSV rows and drift.json."""
  summary = scan.run(config, echo=lines.append)
  assert len(summary.drift) == 5
  drifted = {e['feature'] for e in summary.drift if e['drifted']}
  assert [line.split(':')[1].strip() for line in lines if line.startswith('drift: ') and
          'divergence' in line and 'none' not in line] == sorted(drifted)
  rows = [r for r in _rows(config.out) if r['status'] == 'drift']
  assert len(rows) == len(drifted)
  assert json.load(open(os.path.join(config.out, scan.DRIFT_NAME)))['clips'] == 32
  return drifted


def test_dark_or_upside_down_footage_is_drift_and_the_training_videos_are_not(
    model, drift_footage, tmp_path, quick_plots):  # pylint: disable=redefined-outer-name
  drifted = {kind: _drifted(_config(drift_footage[kind], tmp_path / f'out-{kind}', model,
                                    reference=drift_footage['clips']), [])
             for kind in ('train', 'dark', 'upside-down')}
  assert drifted['train'] == set()
  assert {'brightness', 'contrast'} <= drifted['dark']
  assert 'top_minus_bottom' in drifted['upside-down'] and 'brightness' not in drifted[
      'upside-down']


def test_the_model_carries_its_training_statistics_and_the_scan_uses_them(
    model, drift_footage, tmp_path, quick_plots):  # pylint: disable=redefined-outer-name
  import shutil  # pylint: disable=g-import-not-at-top
  trained = str(tmp_path / 'trained' / '1')
  shutil.copytree(model, trained)
  # What the Trainer's export writes (`export.write_drift_reference`), from the train split.
  path = drift_stats.write_model_reference(
      trained, [os.path.join(drift_footage['clips'], 'train', '*')])
  assert path == os.path.join(trained, 'assets.extra', 'drift_reference.stats.pbtxt')
  carried = drift_stats.model_reference(trained)
  at_scan_time = drift_stats.statistics(drift.reference_features(
      drift_footage['clips'], trained, predict.clip_config_of(trained),
      drift_stats.EXPORT_MAX_CLIPS))
  # 8 records of 20 stored frames (4 s at 5 fps): 5 clips of T = 4 each.
  assert drift_stats.reference_clips(carried) == at_scan_time.datasets[0].num_examples == 40
  means = lambda stats: {f.path.step[0]: round(f.num_stats.mean, 4)
                         for f in stats.datasets[0].features}
  assert means(carried) == means(at_scan_time)
  assert set(means(carried)) == set(drift_stats.FEATURES)
  copied = str(tmp_path / 'copied')  # a copied model folder carries them
  shutil.copytree(trained, copied)
  absent = str(tmp_path / 'absent.sqlite')  # no ML Metadata: only the model has them
  for kind, expected in (('train', set()), ('dark', {'brightness', 'contrast'})):
    lines = []
    config = _config(drift_footage[kind], tmp_path / f'out-{kind}', copied, reference='auto',
                     metadata_path=absent)
    drifted = _drifted(config, lines)
    assert expected <= drifted and (drifted == set()) == (kind == 'train'), (kind, drifted)
    assert f'drift: against the training split statistics the model carries ({path})'.replace(
        trained, copied) in lines
    assert json.load(open(tmp_path / f'out-{kind}' / scan.DRIFT_NAME))['reference'] == (
        drift_stats.reference_path(copied))
  # A model exported before models carried them: the scan says so and falls back (here to
  # ML Metadata, which has no store: not checked).
  lines = []
  summary = scan.run(_config(drift_footage['dark'], tmp_path / 'out-old', model,
                             reference='auto', metadata_path=absent), echo=lines.append)
  assert summary.drift == [] and not os.path.exists(tmp_path / 'out-old' / scan.DRIFT_NAME)
  assert any('the model carries no training split statistics' in l for l in lines), lines
  assert any(l.startswith('drift: not checked: ') and 'absent.sqlite' in l for l in lines), lines


def test_the_training_split_is_found_upstream_of_the_pushed_model(kfp_store):  # pylint: disable=redefined-outer-name
  _, root, first, second = kfp_store
  store = str(root / 'mlmd.sqlite')
  for pushed in (first, second):
    model_dir = pushed.custom_properties['pushed_destination'].string_value
    assert drift.reference_of_model(model_dir, store) == 'gs://b/root/ImportExampleGen/examples'
  with pytest.raises(ValueError, match='no pushed model of version 42'):
    drift.reference_of_model('gs://b/serving/vivit_violence/42', store)
  with pytest.raises(ValueError, match='no metadata store'):
    drift.reference_of_model('gs://b/serving/vivit_violence/42', str(root / 'absent.sqlite'))


def test_a_range_seeks_to_the_frames_a_front_to_back_decode_gives(tmp_path):
  """The ranges of a long video decode with seeking (`iter_frames(seek=True)`): the same
  frames as decoding from the start, on H.264 with keyframes every 30 frames."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import synthetic, video_reader  # pylint: disable=g-import-not-at-top
  spec = synthetic.ClipSpec(index=0, label=1, width=64, height=48, fps=25, num_frames=200,
                            container='mp4', seed=3)
  path = str(tmp_path / 'long.mp4')
  synthetic.write_h264(path, synthetic.render(spec), 25, keyframe_every=30)
  wanted = [150, 151, 170, 199]
  seeking = dict(video_reader.iter_frames(path, wanted, (32, 32), seek=True))
  front_to_back = dict(video_reader.iter_frames(path, wanted, (32, 32)))
  assert sorted(seeking) == wanted and all(
      np.array_equal(seeking[i], front_to_back[i]) for i in wanted)
