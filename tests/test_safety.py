"""Safe by default: the user's data is never deleted or replaced, bad settings stop before any
data is touched, runs are isolated, read-only tools stay read-only (each a reproduction of a reported failure)."""
import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from vivit_tfx import cli
from vivit_tfx.data import ingest, ingest_output
from vivit_tfx.pipeline import configs, run_guard
from tests.conftest import TINY_CLIP, cli_args, tiny_config


def tree_digest(root: str) -> dict:
  """{relative path: sha256} of every file under root (byte-identical check)."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def one_error_line(capsys) -> str:
  err = capsys.readouterr().err
  assert 'Traceback' not in err
  lines = [l for l in err.splitlines() if 'error:' in l]
  assert len(lines) == 1, err
  return lines[0]


@pytest.fixture
def rwf_like(video_root, tmp_path):
  """An RWF-2000-shaped folder: ds/train/{Violence,NonViolence}/… (the user's videos)."""
  ds = tmp_path / 'ds'
  for split, names in (('train', slice(0, None, 2)), ('val', slice(1, None, 2))):
    for cls in ('Violence', 'NonViolence'):
      os.makedirs(ds / split / cls)
      for name in sorted(os.listdir(os.path.join(video_root, cls)))[names]:
        shutil.copy(os.path.join(video_root, cls, name), ds / split / cls / name)
  return str(ds)


# --- 1. ingest never deletes or replaces what it did not make --------------------------------

@pytest.mark.parametrize('output', ['.', 'train', 'clips'])
def test_ingest_refuses_an_output_equal_to_or_inside_its_input(rwf_like, output, capsys):
  before = tree_digest(rwf_like)
  code = cli.main(['ingest', '--input', rwf_like, '--output', os.path.join(rwf_like, output)])
  assert code == 1
  assert 'inside' in one_error_line(capsys)
  assert tree_digest(rwf_like) == before  # the user's videos are byte-identical


def test_ingest_refuses_an_output_that_contains_its_input(rwf_like, capsys):
  parent = os.path.dirname(rwf_like)
  before = tree_digest(parent)
  assert cli.main(['ingest', '--input', rwf_like, '--output', parent]) == 1
  assert 'contains the input' in one_error_line(capsys)
  assert tree_digest(parent) == before


def test_ingest_never_replaces_a_folder_it_did_not_make(video_root, tmp_path, capsys):
  theirs = tmp_path / 'my_results'
  os.makedirs(theirs / 'train')
  (theirs / 'train' / 'notes.txt').write_text('mine')
  before = tree_digest(str(theirs))
  for extra in ([], ['--overwrite']):
    assert cli.main(['ingest', '--input', video_root, '--output', str(theirs)] + extra) == 1
    assert 'not made by `vivit-tfx ingest`' in one_error_line(capsys)
  assert tree_digest(str(theirs)) == before


def test_ingest_replaces_only_its_own_output_from_the_same_settings(video_root, tmp_path,
                                                                    capsys):
  out = str(tmp_path / 'clips')
  base = ['ingest', '--input', video_root, '--output', out, '--frame-size', '32',
          '--workers', '1']
  assert cli.main(base) == 0
  made = ingest_output.read_provenance(out)
  assert made.input_root == os.path.realpath(video_root)
  assert cli.main(base) == 0  # same input and settings: replaced in place
  capsys.readouterr()
  before = tree_digest(out)
  assert cli.main(base + ['--num-frames', '4']) == 1  # other settings: refused …
  assert 'num_frames: 8 → 4' in one_error_line(capsys)
  assert tree_digest(out) == before
  assert cli.main(base + ['--num-frames', '4', '--overwrite']) == 0  # … unless asked
  assert ingest_output.read_provenance(out).settings['clip']['num_frames'] == 4
  assert not [n for n in os.listdir(tmp_path) if 'staging' in n]


@pytest.mark.parametrize('again', [[], ['--overwrite'], ['--num-frames', '4', '--overwrite']])
def test_reingest_never_removes_files_a_user_put_in_its_output(video_root, tmp_path, capsys,
                                                                again):
  out = tmp_path / 'clips'
  base = ['ingest', '--input', video_root, '--output', str(out), '--frame-size', '32',
          '--workers', '1']
  assert cli.main(base) == 0
  (out / 'MY_NOTES.txt').write_text('notes')
  (out / 'my_model').mkdir()
  (out / 'my_model' / 'w.bin').write_text('w')
  capsys.readouterr()
  before = tree_digest(str(out))
  assert cli.main(base + again) == 1
  line = one_error_line(capsys)
  assert f'{out}/MY_NOTES.txt (and 1 more), which ingest did not write' in line
  assert tree_digest(str(out)) == before  # nothing touched: the user's files and the clips
  assert sorted(os.listdir(tmp_path)) == ['clips']


def test_run_overwrite_never_removes_files_a_user_put_in_the_clips(video_root, tmp_path,
                                                                     capsys):
  clips = tmp_path / 'clips'
  ingest_output.ingest_into(video_root, str(clips), clip=TINY_CLIP, workers=1, progress=False)
  (clips / 'train' / 'MY_NOTES.txt').write_text('notes')
  before = tree_digest(str(clips))
  args = _tiny_run_args(str(clips), tmp_path / 'out', video_root, num_frames=4)
  assert cli.main(args + ['--overwrite', 'true']) == 1
  assert f'{clips}/train/MY_NOTES.txt, which ingest did not write' in one_error_line(capsys)
  assert tree_digest(str(clips)) == before


def test_ingest_marker_lists_the_files_it_wrote(video_root, tmp_path):
  out = str(tmp_path / 'clips')
  ingest_output.ingest_into(video_root, out, clip=TINY_CLIP, workers=1, progress=False)
  with open(os.path.join(out, ingest_output.MARKER)) as f:
    listed = json.load(f)['files']
  assert listed == sorted(set(tree_digest(out)) - {ingest_output.MARKER})
  assert ingest_output.foreign_entries(out) == []


def test_interrupted_ingest_leaves_the_previous_output_intact(video_root, tmp_path,
                                                              monkeypatch):
  out = str(tmp_path / 'clips')
  ingest_output.ingest_into(video_root, out, clip=TINY_CLIP, workers=1, progress=False)
  before = tree_digest(out)
  real = ingest.ingest

  def dies_half_way(root, output_dir, **kwargs):
    real(root, output_dir, **kwargs)
    raise KeyboardInterrupt  # e.g. Ctrl-C just before the end

  monkeypatch.setattr(ingest, 'ingest', dies_half_way)
  with pytest.raises(KeyboardInterrupt):
    ingest_output.ingest_into(video_root, out, clip=TINY_CLIP, workers=1, progress=False)
  assert tree_digest(out) == before
  assert sorted(os.listdir(tmp_path)) == ['clips']  # no staging folder left behind


def test_a_killed_ingest_staging_folder_is_removed_by_the_next(video_root, tmp_path):
  out = str(tmp_path / 'clips')
  child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])
  orphan = f'{out}.ingest-staging-deadbeef'
  os.makedirs(orphan)
  with open(os.path.join(orphan, ingest_output.STAGING_MARKER), 'w') as f:
    json.dump({'pid': child.pid, 'host': os.uname().nodename}, f)
  child.kill()
  child.wait()
  foreign = f'{out}.ingest-staging-notours'  # same name pattern, no marker: not ours
  os.makedirs(foreign)
  ingest_output.ingest_into(video_root, out, clip=TINY_CLIP, workers=1, progress=False)
  assert not os.path.exists(orphan) and os.path.isdir(foreign)


# --- 1. run: synthetic data only at the default path; clips checked against the config -------

def _tiny_run_args(clips, root, videos, **changes):
  return ['run'] + cli_args(tiny_config(clips, root, videos_dir=videos, **changes))


def test_run_with_a_missing_videos_dir_writes_nothing(tmp_path, capsys):
  typo = tmp_path / 'my_vidoes'
  code = cli.main(_tiny_run_args(str(tmp_path / 'clips'), tmp_path / 'out', str(typo)))
  assert code == 1
  assert 'my_vidoes: videos folder does not exist' in one_error_line(capsys)
  assert not typo.exists() and not (tmp_path / 'clips').exists()
  assert not (tmp_path / 'out').exists()  # "nothing was written": no logs, no lock file


def test_run_refuses_clips_made_with_other_settings(video_root, tmp_path, capsys):
  clips = str(tmp_path / 'my_clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  before = tree_digest(clips)
  code = cli.main(_tiny_run_args(clips, tmp_path / 'out', video_root, num_frames=16))
  assert code == 1
  line = one_error_line(capsys)
  assert 'num_frames: 8 → 16' in line
  assert f'vivit-tfx ingest --input {video_root} --output {clips} --num-frames 16' in line
  assert tree_digest(clips) == before


def test_run_uses_clips_ingested_with_other_split_shares(video_root, tmp_path):
  """`run` has no split options: clips ingested with --train/--eval/--test of one's own are
  the data's clips (they were refused as made 'with other settings')."""
  from vivit_tfx.data import ingest, prepare  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  clips = str(tmp_path / 'my_clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False,
                            splits=ingest.SplitConfig(train=0.5, eval=0.25, test=0.25))
  config = configs.PipelineConfig(output_root=str(tmp_path / 'out'), clips_dir=clips,
                                  videos_dir=video_root, num_frames=TINY_CLIP.num_frames,
                                  frame_size=TINY_CLIP.frame_size)
  assert prepare.check_data(config).use_clips


def test_run_refuses_clips_made_from_another_videos_folder(video_root, tmp_path, capsys):
  clips = str(tmp_path / 'my_clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  other = str(tmp_path / 'other_videos')
  shutil.copytree(video_root, other)
  before = tree_digest(clips)
  assert cli.main(_tiny_run_args(clips, tmp_path / 'out', other)) == 1
  assert f'input: {os.path.realpath(video_root)} → {os.path.realpath(other)}' in (
      one_error_line(capsys))
  assert tree_digest(clips) == before


@pytest.mark.parametrize('flags, message', [
    (['--num-frames', '7'], 'num_frames 7 is not a multiple of the tubelet size 2'),
    (['--train-steps', '-5'], '--train-steps must be ≥ 0, got -5'),
    (['--batch-size', '0'], '--batch-size must be positive, got 0'),
    (['--distribution', 'mirored'], "--distribution 'mirored' is not one of"),
    (['--image-size', '30x32'], 'image height 30 is not a multiple'),
])
def test_invalid_settings_fail_before_any_data_is_touched(video_root, tmp_path, capsys, flags,
                                                          message):
  clips = str(tmp_path / 'my_clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  before = tree_digest(clips)
  assert cli.main(_tiny_run_args(clips, tmp_path / 'out', video_root) + flags) == 1
  assert message in one_error_line(capsys)
  assert tree_digest(clips) == before and not (tmp_path / 'out').exists()


def test_every_invalid_setting_is_listed_one_line_each():
  config = configs.PipelineConfig(train_steps=-1, batch_size=0, distribution='x')
  with pytest.raises(configs.ConfigError) as e:
    config.validate()
  assert len(e.value.errors) == 3


def error_lines(capsys) -> list:
  err = capsys.readouterr().err
  assert 'Traceback' not in err
  return [l.split('error: ', 1)[1] for l in err.splitlines() if 'error:' in l]


@pytest.mark.parametrize('flags, message', [
    (['--classes', ',,,'], "--classes ',,,' names no class"),
    (['--classes', 'A,B,A'], "--classes 'A,B,A' lists A twice"),
    (['--sample-fps', '-2'], '--sample-fps must be ≥ 0, got -2.0'),
    (['--jpeg-quality', '500'], '--jpeg-quality must be within [1, 100], got 500'),
    (['--train', '0.5', '--eval', '0.5', '--test', '0.5'],
     '--train, --eval and --test must sum to 1, got 1.5'),
    (['--train', '0.85', '--eval', '0', '--test', '0.15'], '--eval must be within (0, 1), got 0.0'),
    (['--frame-size', '0x32'], '--frame-size must be positive, got 0x32'),
    (['--num-frames', '0'], '--num-frames must be positive, got 0'),
])
def test_ingest_refuses_each_bad_setting_and_writes_nothing(video_root, tmp_path, capsys,
                                                            flags, message):
  out = tmp_path / 'clips'
  assert cli.main(['ingest', '--input', video_root, '--output', str(out)] + flags) == 1
  lines = error_lines(capsys)
  assert len(lines) == 1 and message in lines[0], lines
  assert not out.exists()


def test_ingest_reports_every_bad_setting_together(video_root, tmp_path, capsys):
  out = tmp_path / 'clips'
  assert cli.main(['ingest', '--input', video_root, '--output', str(out), '--classes', ',,,',
                   '--sample-fps', '-2', '--jpeg-quality', '500', '--train', '0.5', '--eval',
                   '0.5', '--test', '0.5']) == 1
  assert len(error_lines(capsys)) == 4
  assert not out.exists()


@pytest.mark.parametrize('flags, messages', [
    (['--classes', ',,,'], ["--classes ',,,' names no class"]),
    (['--train-steps', '-1', '--batch-size', '0', '--num-frames', '7'],
     ['--batch-size must be positive, got 0', '--train-steps must be ≥ 0, got -1',
      'num_frames 7 is not a multiple of the tubelet size 4']),
])
def test_run_reports_every_bad_setting_and_writes_nothing(tmp_path, capsys, flags, messages):
  out = tmp_path / 'out'
  assert cli.main(['run', '--output-root', str(out), '--clips-dir', str(tmp_path / 'clips'),
                   '--videos-dir', str(tmp_path / 'videos')] + flags) == 1
  lines = error_lines(capsys)
  assert len(lines) == len(messages), lines
  assert all(m in l for m, l in zip(messages, lines)), lines
  assert not out.exists() and not (tmp_path / 'clips').exists()


FLOAT_OPTIONS = ('sample_fps', 'max_duration_s', 'learning_rate', 'accuracy_threshold',
                 'max_accuracy_drop', 'min_test_fraction_per_class', 'train', 'eval', 'test')


@pytest.mark.parametrize('value', [float('inf'), float('-inf'), float('nan')])
@pytest.mark.parametrize('name', FLOAT_OPTIONS)
def test_every_float_option_refuses_inf_and_nan(name, value):
  flag = '--' + name.replace('_', '-')
  assert configs.option_errors({name: value}) == [
      f'{flag} must be a finite number, got {value}']


def test_json_options_refuse_non_finite_numbers():
  errors = configs.option_errors({'vivit_overrides': '{"dropout_rate": NaN}',
                                  'pretrain_overrides': '{"mask_ratio": Infinity}',
                                  'self_training_overrides': '{"threshold": -Infinity}'})
  assert errors == ['--vivit-overrides holds NaN: every number must be finite',
                    '--pretrain-overrides holds Infinity: every number must be finite',
                    '--self-training-overrides holds -Infinity: every number must be finite']


def test_run_with_an_infinite_duration_says_so_in_one_line_and_writes_nothing(tmp_path, capsys):
  out = tmp_path / 'out'
  assert cli.main(['run', '--output-root', str(out), '--clips-dir', str(tmp_path / 'clips'),
                   '--videos-dir', str(tmp_path / 'videos'), '--max-duration-s', 'inf']) == 1
  assert error_lines(capsys) == ['--max-duration-s must be a finite number, got inf']
  assert not out.exists() and not (tmp_path / 'clips').exists()


def test_ingest_with_a_nan_share_says_so_in_one_line(video_root, tmp_path, capsys):
  out = tmp_path / 'clips'
  assert cli.main(['ingest', '--input', video_root, '--output', str(out), '--test', 'nan',
                   '--max-duration-s', 'inf']) == 1
  assert sorted(error_lines(capsys)) == ['--max-duration-s must be a finite number, got inf',
                                         '--test must be a finite number, got nan']
  assert not out.exists()


@pytest.mark.parametrize('argv', [['make-synthetic', '--segment-s', 'inf'],
                                  ['watch', '0', '--stride-s', 'nan'],
                                  ['serve', '--threshold=-inf']])
def test_other_float_options_refuse_inf_and_nan(argv, capsys):
  with pytest.raises(SystemExit):
    cli.main(argv)
  assert 'expected a finite number' in capsys.readouterr().err


def test_run_with_too_few_videos_for_eval_and_test_stops_before_writing(video_root, tmp_path,
                                                                        capsys):
  ds = tmp_path / 'ds'
  for cls, new in (('Violence', 'fight'), ('NonViolence', 'calm')):
    os.makedirs(ds / new)
    for name in sorted(os.listdir(os.path.join(video_root, cls)))[:2]:
      shutil.copy(os.path.join(video_root, cls, name), ds / new / name)
  out, clips = tmp_path / 'out', tmp_path / 'clips'
  assert cli.main(['run', '--videos-dir', str(ds), '--layout', 'folders', '--classes',
                   'calm,fight', '--positive-class', 'fight', '--clips-dir', str(clips),
                   '--output-root', str(out)]) == 1
  line = one_error_line(capsys)
  assert (f'{ds}: 4 video(s) split 4/0/0 (train/eval/test): the eval and test splits have no '
          'video') in line
  assert 'every class has at least 3, one per split (calm has 2, fight has 2)' in line
  assert not out.exists() and not clips.exists()


def test_run_refuses_ingested_clips_with_an_empty_split():
  from vivit_tfx.data import ingest, prepare  # pylint: disable=g-import-not-at-top
  summary = ingest.IngestSummary(classes=['A', 'B'], clips={
      'train': {'A': 3, 'B': 2}, 'eval': {'A': 1}, 'test': {}})
  with pytest.raises(prepare.DataError, match=r'clips: 6 video\(s\) split 5/1/0 \(train/eval/'
                     r'test\): the test split has no video .*\(B has 2\), then re-ingest'):
    prepare._check_splits(summary, 'clips', 're-ingest them')  # pylint: disable=protected-access
  fine = ingest.IngestSummary(classes=['A', 'B'], clips={**summary.clips, 'test': {'B': 1}})
  prepare._check_splits(fine, 'c', '')  # pylint: disable=protected-access


def test_run_names_its_own_options_when_the_clips_dir_is_taken(video_root, tmp_path, capsys):
  clips = tmp_path / 'clips'
  os.makedirs(clips)
  (clips / 'notes.txt').write_text('mine')
  assert cli.main(_tiny_run_args(str(clips), tmp_path / 'out', video_root)) == 1
  line = one_error_line(capsys)
  assert 'choose a new or empty --clips-dir' in line and '--output' not in line
  inside = os.path.join(video_root, 'clips')
  assert cli.main(_tiny_run_args(inside, tmp_path / 'out', video_root)) == 1
  assert f'choose an --clips-dir outside {video_root}' in one_error_line(capsys)
  assert not os.path.exists(inside) and not (tmp_path / 'out').exists()


# --- 4. runs are isolated: a lock on the output root, each run reports itself ----------------

def test_a_second_run_on_a_locked_output_root_stops_with_a_clear_message(tmp_path, capsys):
  with run_guard.RunLock(str(tmp_path)):
    with pytest.raises(run_guard.BusyError, match='another run is using this output root'):
      with run_guard.RunLock(str(tmp_path)):
        pass
  with run_guard.RunLock(str(tmp_path)):  # released on exit
    pass


def _cli(*args, **kwargs):
  env = {**os.environ, 'PYTHONPATH': os.getcwd() + os.pathsep + os.environ.get('PYTHONPATH', '')}
  return subprocess.Popen([sys.executable, '-m', 'vivit_tfx.cli', *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **kwargs)


def _lock_held_by(root: str, pid: int) -> bool:
  """Whether process `pid` holds the output root's run lock (its pid in the lock file), read
  without taking the lock: a probe that takes it makes a run starting at that moment find its
  root busy (CI 9a4639a: the first run stopped with 'another run is using this output root')."""
  try:
    with open(os.path.join(root, run_guard.LOCK_FILE)) as f:
      return json.load(f).get('pid') == pid
  except (OSError, ValueError):
    return False


@pytest.mark.e2e
def test_two_runs_on_one_output_root(video_root, tmp_path):
  """A second run stops (or waits, per --if-busy); each run reports its own run id, and a
  test split too small per class is not blessed, with the reason in the summary."""
  clips = str(tmp_path / 'clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  root = str(tmp_path / 'out')
  # The defaults: ≥ 5 test clips per class, which the 24-video set does not have.
  args = _tiny_run_args(clips, root, video_root, min_test_examples_per_class=5,
                        min_test_fraction_per_class=0.1)
  first = _cli(*args)
  deadline = time.time() + 120
  while not _lock_held_by(root, first.pid):
    assert first.poll() is None and time.time() < deadline, first.communicate()
    time.sleep(0.2)
  second = _cli(*args)
  out, err = second.communicate(timeout=120)
  assert second.returncode == 1 and 'another run is using this output root' in err, err
  waiting = _cli(*args, '--if-busy', 'wait')
  out_first, err_first = first.communicate(timeout=600)
  out_wait, err_wait = waiting.communicate(timeout=600)
  assert first.returncode == 0 and waiting.returncode == 0, err_first + err_wait
  run_first, run_wait = (re.search(r'^run (\S+): \d+ executions', out, re.M).group(1)
                         for out in (out_first, out_wait))
  assert run_first != run_wait
  assert 'waiting for the run' in out_wait
  reason = r'(NonViolence|Violence): \d test videos < 5 \(--min-test-examples-per-class\)'
  for out, run_id in ((out_first, run_first), (out_wait, run_wait)):
    report = out.split('report: ', 1)[1].split()[0]
    assert run_id.replace(':', '-') in report  # its own report
    # Warned before training, one line per class, and told why after, with the numbers.
    before = out.split(f'run {run_id}:')[0]
    assert len(re.findall(r'\[run\] warning: ' + reason + ': the model cannot be blessed',
                          before)) == 2, before
    assert re.search(r'blessed: False, \d+ failed check\(s\):\n(    - .*\n)*    - ' + reason,
                     out), out
    assert 'pushed model: (none' in out
    with open(report) as f:
      assert re.search(reason.replace('<', '&lt;'), f.read())


@pytest.mark.e2e
def test_killed_run_leaves_no_running_execution_after_a_rerun(video_root, tmp_path):
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import metadata  # pylint: disable=g-import-not-at-top
  clips = str(tmp_path / 'clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  root = str(tmp_path / 'out')
  args = _tiny_run_args(clips, root, video_root, train_steps=400, steps_per_epoch=100)
  store_path = os.path.join(root, 'metadata.sqlite')
  running = metadata_store_pb2.Execution.RUNNING

  def running_nodes():
    if not os.path.exists(store_path):
      return []
    try:
      store = metadata.open_sqlite(store_path, read_only=True)
      return [metadata.node_id(store, e) for e in store.get_executions()
              if e.last_known_state == running]
    except Exception:  # pylint: disable=broad-except
      return []  # the store is being created

  victim = _cli(*args)
  deadline = time.time() + 300
  while 'Trainer' not in running_nodes():
    assert victim.poll() is None and time.time() < deadline, victim.communicate()
    time.sleep(0.5)
  time.sleep(2)
  os.killpg(victim.pid, signal.SIGKILL)
  victim.wait()
  assert 'Trainer' in running_nodes()  # what the old code left behind forever

  rerun = _cli(*_tiny_run_args(clips, root, video_root))
  out, err = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, err
  assert 'left RUNNING by an interrupted run: marked CANCELED' in out
  assert running_nodes() == []
  store = metadata.open_sqlite(store_path, read_only=True)
  states = [metadata_store_pb2.Execution.State.Name(e.last_known_state)
            for e in store.get_executions() if metadata.node_id(store, e) == 'Trainer']
  assert sorted(states) == ['CANCELED', 'COMPLETE']


# --- 5. read-only tools stay read-only ---------------------------------------------------------

@pytest.fixture
def foreign_sqlite(tmp_path):
  path = str(tmp_path / 'app.db')
  with sqlite3.connect(path) as db:
    db.execute('CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)')
    db.execute("INSERT INTO users (name) VALUES ('ada')")
  return path


def _digest(path):
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.parametrize('kind', ['sqlite', 'text', 'missing'])
def test_lineage_and_report_refuse_a_file_that_is_not_a_store(foreign_sqlite, tmp_path, capsys,
                                                              kind):
  path = {'sqlite': foreign_sqlite, 'text': str(tmp_path / 'notes.txt'),
          'missing': str(tmp_path / 'absent.sqlite')}[kind]
  if kind == 'text':
    with open(path, 'w') as f:
      f.write('not a database\n')
  before = _digest(path) if os.path.exists(path) else None
  assert cli.main(['lineage', '--metadata', path, '--runs']) == 1
  assert path in one_error_line(capsys)
  output_root = tmp_path / 'root'
  os.makedirs(output_root)
  if before:
    shutil.copy(path, output_root / 'metadata.sqlite')
  assert cli.main(['report', '--output-root', str(output_root)]) == 1
  assert 'metadata.sqlite' in one_error_line(capsys)
  if before:
    assert _digest(path) == before and _digest(output_root / 'metadata.sqlite') == before
  if kind == 'sqlite':
    with sqlite3.connect(path) as db:  # no ML Metadata table was added
      assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == [
          'users']
  if kind == 'missing':
    assert not os.path.exists(path)


def test_lineage_leaves_a_real_store_byte_identical(first_run, tmp_path, capsys):
  config, _ = first_run
  before = _digest(config.metadata_path)
  assert cli.main(['lineage', '--metadata', config.metadata_path, '--runs']) == 0
  assert cli.main(['report', '--output-root', config.output_root,
                   '--out-dir', str(tmp_path / 'report')]) == 0
  assert _digest(config.metadata_path) == before


def test_timeline_goes_on_after_a_bad_file(first_run, video_root, tmp_path, capsys):
  config, _ = first_run
  good = os.path.join(video_root, 'Violence', sorted(os.listdir(
      os.path.join(video_root, 'Violence')))[0])
  empty = tmp_path / 'empty.mp4'
  empty.write_bytes(b'')
  text = tmp_path / 'notes.txt'
  text.write_text('hello')
  twins = []  # two videos with one basename: each gets its own outputs
  for folder in ('a', 'b'):
    os.makedirs(tmp_path / folder)
    twins.append(str(tmp_path / folder / 'clip.mp4'))
    shutil.copy(good, twins[-1])
  out = tmp_path / 'tl'
  code = cli.main(['predict', '--timeline', str(empty), str(text), good, *twins,
                   '--serving-dir', config.serving_dir, '--out-dir', str(out)])
  captured = capsys.readouterr()
  assert code == 1 and 'Traceback' not in captured.err  # an input was skipped
  assert f'{empty}: error:' in captured.err
  assert f"{text}: skipped: unsupported extension '.txt'" in captured.err
  assert f'skipped 2 of 5 input(s): {text}, {empty}' in captured.err
  assert f'{good}: ' in captured.out and 'windows' in captured.out
  pngs = sorted(n for n in os.listdir(out) if n.endswith('.timeline.png'))
  assert len(pngs) == 3 and len([n for n in pngs if n.startswith('clip-')]) == 2, pngs
  # The model's clip fixes the window (8 frames at 8 fps: 1 s): another --window-s is refused.
  assert cli.main(['predict', '--timeline', good, '--serving-dir', config.serving_dir,
                   '--out-dir', str(out), '--window-s', '3']) == 1
  assert 'a window is about 1 s' in one_error_line(capsys)
  assert cli.main(['predict', '--timeline', good, '--serving-dir', config.serving_dir,
                   '--out-dir', str(out), '--window-s', '1', '--json']) == 0
  assert json.loads(capsys.readouterr().out)['window_s'] == 1.0
  # A folder of numbered versions is taken as `serve` and `watch` take it (the newest).
  assert cli.main(['predict', good, '--model-dir', os.path.join(config.serving_dir,
                                                                config.model_name)]) == 0
  # attention goes on after a bad file too, naming it, and counts it.
  capsys.readouterr()
  assert cli.main(['attention', str(empty), good, '--serving-dir', config.serving_dir,
                   '--out-dir', str(tmp_path / 'att')]) == 1
  err = capsys.readouterr().err
  assert f'{empty}: error:' in err and f'skipped 1 of 2 input(s): {empty}' in err, err
  stem = os.path.splitext(os.path.basename(good))[0]
  assert (tmp_path / 'att' / f'{stem}.attention.png').exists()


def test_make_synthetic_never_writes_into_an_existing_folder(rwf_like, tmp_path, capsys):
  before = tree_digest(rwf_like)
  assert cli.main(['make-synthetic', '--output', rwf_like, '--num-clips', '4']) == 1
  assert 'not empty' in one_error_line(capsys)
  existing = tmp_path / 'long.mp4'
  existing.write_bytes(b'my video')
  assert cli.main(['make-synthetic', '--long', str(existing)]) == 1
  assert 'already exists' in one_error_line(capsys)
  assert tree_digest(rwf_like) == before and existing.read_bytes() == b'my video'


def test_compile_never_replaces_a_file_that_is_not_a_spec(tmp_path, capsys):
  mine = tmp_path / 'mine.yaml'
  mine.write_text('my own notes\n')
  args = ['compile', '--image', 'x/y:1', '--pipeline-root', 'gs://b/r', '--output', str(mine)]
  assert cli.main(args) == 1
  assert 'not a compiled pipeline spec' in one_error_line(capsys)
  assert mine.read_text() == 'my own notes\n'
  assert cli.main(args + ['--overwrite']) == 0  # asked: replaced by the spec …
  assert 'pipelineInfo' in mine.read_text()
  # Local paths written into the spec are named (the default --clips-dir and serving dir).
  note = capsys.readouterr().out.split("note: this machine's paths", 1)[1].splitlines()[0]
  assert f'--clips-dir {os.path.abspath("data/clips")}' in note and '--pipeline-root' not in note
  assert cli.main(args) == 0  # … which a recompile replaces without asking


def test_out_dir_tools_never_replace_a_users_file(first_run, tmp_path, capsys):
  """lineage and report write fixed names (lineage.png, index.html, …) into the --out-dir the
  user names: a same-named file of the user's stays byte-identical (one line, exit 1) unless
  --overwrite; the tool's own files are refreshed by a rerun."""
  config, run_id = first_run
  mine = tmp_path / 'mine'
  mine.mkdir()
  (mine / 'lineage.png').write_bytes(b'my holiday picture')
  (mine / 'index.html').write_text('<p>my homepage</p>')
  capsys.readouterr()
  lineage_args = ['lineage', '--metadata', config.metadata_path, '--out-dir', str(mine)]
  report_args = ['report', '--output-root', config.output_root, '--run-id', run_id,
                 '--out-dir', str(mine)]
  for args in (lineage_args, report_args):
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'was not written by vivit-tfx' in err[0], err
  assert (mine / 'lineage.png').read_bytes() == b'my holiday picture'
  assert (mine / 'index.html').read_text() == '<p>my homepage</p>'
  assert not (mine / 'lineage.dot').exists()  # nothing written before the refusal

  fresh = tmp_path / 'fresh'
  for _ in range(2):  # a rerun replaces only what the tool wrote itself
    assert cli.main(lineage_args[:-1] + [str(fresh)]) == 0
    assert cli.main(report_args[:-1] + [str(fresh)]) == 0
  assert cli.main(lineage_args + ['--overwrite']) == 0
  assert (mine / 'lineage.png').read_bytes().startswith(b'\x89PNG')
  assert cli.main(report_args + ['--overwrite']) == 0  # a bare flag, as for lineage
  assert (mine / 'index.html').read_text().startswith('<!doctype html>')


def test_output_folder_claims_only_free_or_own_names(tmp_path):
  from vivit_tfx import outputs  # pylint: disable=g-import-not-at-top
  folder = outputs.OutputFolder(str(tmp_path))
  (tmp_path / 'users.timeline.png').write_bytes(b'x')
  with pytest.raises(outputs.OutputExists, match='users.timeline.png'):
    folder.claim('a.timeline.png', 'users.timeline.png')
  path, never = folder.claim('a.timeline.png', 'b.timeline.png')
  open(path, 'w').close()
  folder.done()  # lists what was written, not what was only claimed
  again = outputs.OutputFolder(str(tmp_path))
  assert again.claim('a.timeline.png') == [path]  # its own file: may be replaced
  open(never, 'w').close()  # the user's file under a name the tool claimed but never wrote
  with pytest.raises(outputs.OutputExists, match='b.timeline.png'):
    again.claim('b.timeline.png')
  assert outputs.OutputFolder(str(tmp_path), overwrite=True).claim('users.timeline.png')
  assert sorted(os.listdir(tmp_path)) == [outputs.MARKER, 'a.timeline.png', 'b.timeline.png',
                                          'users.timeline.png']  # no scratch file left


# --- every "not blessed" says why, with numbers; small splits are warned about before ------

def test_split_warnings_name_each_class_that_cannot_be_blessed():
  clips = {'train': {'Fight': 2, 'Normal': 30}, 'eval': {'Normal': 6}, 'test': {'Normal': 4}}
  lines = configs.split_warnings(clips, ['Fight', 'Normal'], 5, 0.1, 0.15)
  assert lines == [
      'Fight: 2 video(s) split 2/0/0 (train/eval/test): every split needs at least one; add '
      'about 34 more video(s) of Fight (for 5 test videos at --test 0.15)',
      'Normal: 4 test videos < 5 (--min-test-examples-per-class): the model cannot be '
      'blessed; add about 7 more video(s) of Normal (at --test 0.15), or lower '
      '--min-test-examples-per-class']
  assert configs.split_warnings({'test': {'A': 5, 'B': 5}, 'train': {'A': 9, 'B': 9},
                                 'eval': {'A': 1, 'B': 1}}, ['A', 'B'], 5, 0.1, 0.15) == []


def test_add_videos_advice_says_how_many_more_and_only_what_can_work():
  """3 videos can never give 5 test videos, whatever --test says; 22 can, at --test 0.23."""
  clips = {'train': {'calm': 1, 'fight': 16}, 'eval': {'calm': 1, 'fight': 3},
           'test': {'calm': 1, 'fight': 3}}
  calm, fight = configs.split_warnings(clips, ['calm', 'fight'], 5, 0.1, 0.15)
  assert calm == ('calm: 1 test videos < 5 (--min-test-examples-per-class): the model cannot '
                  'be blessed; add about 27 more video(s) of calm (at --test 0.15), or lower '
                  '--min-test-examples-per-class')
  assert fight == ('fight: 3 test videos < 5 (--min-test-examples-per-class): the model '
                   'cannot be blessed; add about 14 more video(s) of fight (at --test 0.15), '
                   'ingest with --test 0.23 (and --train, --eval summing to 0.77), or lower '
                   '--min-test-examples-per-class')
  assert configs.split_warnings({'train': {'a': 1}}, ['a'], 0, 0.0, 0.15) == [
      'a: 1 video(s) split 1/0/0 (train/eval/test): every split needs at least one; add '
      'about 2 more video(s) of a']
  # Enough videos, all in test (reviews export's held-out.csv): no "add about 0 more".
  assert configs.split_warnings({'test': {'a': 13}}, ['a'], 5, 0.1, 0.15) == [
      'a: 13 video(s) split 0/0/13 (train/eval/test): every split needs at least one; enough '
      'videos, but the dataset places none in train, eval (a split column, or groups of '
      '--group-regex)']


def test_ingest_warns_when_a_class_cannot_meet_the_blessing_minimums(video_root, tmp_path,
                                                                    capsys):
  assert cli.main(['ingest', '--input', video_root, '--output', str(tmp_path / 'clips'),
                   '--frame-size', '32', '--workers', '1']) == 0
  warnings = re.findall(r'warning: (\w+): \d test videos < 5 \(--min-test-examples-per-class\)',
                        capsys.readouterr().out)
  assert sorted(warnings) == ['NonViolence', 'Violence']


def test_not_blessed_reasons_carry_numbers_and_class_names():
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.proto import validation_result_pb2  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import tfma_results  # pylint: disable=g-import-not-at-top
  result = text_format.Parse("""
    validation_ok: false
    metric_validations_per_slice {
      slice_key { single_slice_keys { column: "label" int64_value: 1 } }
      failures { metric_key { name: "example_count" }
                 metric_threshold { value_threshold { lower_bound { value: 4.5 } } }
                 metric_value { double_value { value: 3.0 } } }
    }
    metric_validations_per_slice {
      failures { metric_key { name: "binary_accuracy" }
                 metric_threshold { value_threshold { lower_bound { value: 0.8 } } }
                 metric_value { double_value { value: 0.62 } } }
      failures { metric_key { name: "binary_accuracy" is_diff: true }
                 metric_threshold { change_threshold { absolute { value: -0.02 } } }
                 metric_value { double_value { value: -0.1 } } }
    }
    missing_slices { feature_values { key: "label" value: "0" } }
  """, validation_result_pb2.ValidationResult())
  assert tfma_results.failure_lines(result, ['NonViolence', 'Violence'], 5) == [
      'accuracy 0.62 < 0.80 (--accuracy-threshold)',
      'accuracy -0.10 against the last pushed model, a drop larger than 0.02 '
      '(--max-accuracy-drop)',
      'Violence: 3 test videos < 5 (--min-test-examples-per-class)',
      'NonViolence: no test video']
  assert tfma_results.failure_lines(result, ['N', 'V'], 2)[2] == (
      'V: 3 test videos < 5 (--min-test-fraction-per-class)')
  assert tfma_results.slice_name((('label', 1),), ['N', 'V']) == 'label=V'


def test_not_blessed_lists_the_whole_split_first_then_classes_then_slices():
  from google.protobuf import text_format  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.proto import validation_result_pb2  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import tfma_results  # pylint: disable=g-import-not-at-top
  acc = """failures { metric_key { name: "binary_accuracy" }
              metric_threshold { value_threshold { lower_bound { value: 0.8 } } }
              metric_value { double_value { value: %s } } }"""
  result = text_format.Parse(f"""
    validation_ok: false
    metric_validations_per_slice {{
      slice_key {{ single_slice_keys {{ column: "container" bytes_value: "avi" }} }}
      {acc % 0.5} }}
    metric_validations_per_slice {{
      slice_key {{ single_slice_keys {{ column: "label" int64_value: 0 }} }}
      {acc % 0.4} }}
    metric_validations_per_slice {{ {acc % 0.6} }}
  """, validation_result_pb2.ValidationResult())
  assert tfma_results.failure_lines(result, ['calm', 'fight']) == [
      'accuracy 0.60 < 0.80 (--accuracy-threshold)',
      'accuracy on container=avi 0.50 < 0.80 (--accuracy-threshold)',
      'accuracy on label=calm 0.40 < 0.80 (--accuracy-threshold)']


def test_undefined_metrics_are_shown_as_such_never_as_0_or_nan():
  from vivit_tfx.audit import run_summary, tfma_results  # pylint: disable=g-import-not-at-top

  def values(**metrics):
    return {'': {'': {k: {'doubleValue': v} for k, v in metrics.items()}}}

  class Result:  # the part of a TFMA EvalResult read here
    slicing_metrics = [
        ((), values(binary_accuracy=0.5, auc=0.7, precision=float('nan'), recall=0.0)),
        ((('label', 0),), values(binary_accuracy=0.5, auc=0.0, precision=0.0,
                                 recall=float('nan'))),
        ((('label', 1),), values(binary_accuracy=0.5, auc=0.0, precision=1.0, recall=0.5))]

  rows = dict(tfma_results.metrics_by_slice(Result(), ['calm', 'fight'], shown=True))
  assert rows['label=calm'] == {'binary_accuracy': 0.5, 'auc': 'n/a (no positives)',
                                'precision': 'n/a (no positives)',
                                'recall': 'n/a (no positives)'}
  assert rows['label=fight'] == {'binary_accuracy': 0.5, 'auc': 'n/a (no negatives)',
                                 'precision': 1.0, 'recall': 0.5}
  assert rows['overall']['precision'] == 'n/a'
  summary = run_summary.RunSummary(
      'r1', 1.0, {}, dict(tfma_results.metrics_by_slice(Result()))['overall'], False, None,
      'm', 'p', not_blessed_because=['accuracy 0.50 < 0.80 (--accuracy-threshold)',
                                     'calm: 3 test videos < 5 (--min-test-examples-per-class)'])
  text = summary.to_text()
  assert 'nan' not in text and 'precision=n/a' in text
  assert ('  blessed: False, 2 failed check(s):\n'
          '    - accuracy 0.50 < 0.80 (--accuracy-threshold)\n'
          '    - calm: 3 test videos < 5 (--min-test-examples-per-class)\n') in text


def test_run_warns_before_training_when_splits_cannot_bless(video_root, tmp_path, capsys):
  from vivit_tfx.data import prepare  # pylint: disable=g-import-not-at-top
  clips = str(tmp_path / 'clips')
  ingest_output.ingest_into(video_root, clips, clip=TINY_CLIP, workers=1, progress=False)
  config = tiny_config(clips, tmp_path / 'out', videos_dir=video_root,
                       min_test_examples_per_class=5)
  prepare.prepare_data(config, progress=False)
  out = capsys.readouterr().out
  assert len(re.findall(r'\[run\] warning: \w+: \d test videos < 5', out)) == 2, out
  assert prepare.warn_splits(config.replace(min_test_examples_per_class=1)) == []
