"""Dataset layouts (rlvs, rwf2000, hockey, folders, csv, auto), class order, group-safe splits,
and ingestion of each layout (split after decoding, class names in manifest and summary)."""
import collections
import glob
import json
import os
import shutil

import pytest
import tensorflow as tf

from vivit_tfx import cli
from vivit_tfx.data import ingest, layouts
from vivit_tfx.data import features
from tests.conftest import TINY_CLIP


def _touch(root, *paths):
  for p in paths:
    path = os.path.join(root, p)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, 'wb').close()
  return str(root)


def _rwf2000(root):
  """RWF-2000 shape: 6 source videos per class in train (2-3 clips each), 2 per class in val."""
  paths = []
  for cls in ('Fight', 'NonFight'):
    for g in range(6):
      paths += [f'train/{cls}/{cls[0]}yt{g}_{k}.avi' for k in range(2 + g % 2)]
    paths += [f'val/{cls}/{cls[0]}vyt{g}_{k}.avi' for g in range(2) for k in range(2)]
  return _touch(root, *paths)


LAYOUT_TREES = {
    'rlvs': ['Violence/V_1.mp4', 'NonViolence/NV_1.mp4'],
    'rwf2000': ['train/Fight/a_0.avi', 'train/NonFight/b_0.avi', 'val/Fight/c_0.avi',
                'val/NonFight/d_0.avi'],
    'hockey': ['fi1_xvid.avi', 'fi2_xvid.avi', 'no1_xvid.avi'],
    'folders': ['Abuse/a.mp4', 'Fighting/f.mp4', 'Normal/n.mp4'],
    'csv': ['clips/a.mp4', 'clips/b.mp4'],
}


@pytest.mark.parametrize('layout', sorted(LAYOUT_TREES))
def test_auto_detects_each_layout(layout, tmp_path):
  root = _touch(tmp_path, *LAYOUT_TREES[layout])
  if layout == 'csv':
    (tmp_path / 'labels.csv').write_text('clips/a.mp4,Fight\nclips/b.mp4,NoFight\n')
    root = str(tmp_path / 'labels.csv')
  assert layouts.detect(root) == layout
  found = layouts.scan(root)
  assert found.layout == layout and found.candidates and not found.skipped
  expected = {'rlvs': ('NonViolence', 'Violence'), 'rwf2000': ('NonFight', 'Fight'),
              'hockey': ('NonFight', 'Fight'), 'folders': ('Abuse', 'Fighting', 'Normal'),
              'csv': ('NoFight', 'Fight')}[layout]
  assert found.classes == expected


def test_rlvs_nested_one_level_deeper(tmp_path):
  root = _touch(tmp_path, 'Real Life Violence Dataset/Violence/V_1.mp4',
                'Real Life Violence Dataset/NonViolence/NV_1.mp4')
  found = layouts.scan(root)
  assert found.layout == 'rlvs'
  assert {c.path: c.label for c in found.candidates} == {
      'Real Life Violence Dataset/Violence/V_1.mp4': 1,
      'Real Life Violence Dataset/NonViolence/NV_1.mp4': 0}


def test_rwf2000_keeps_official_partition_and_groups(tmp_path):
  found = layouts.scan(_rwf2000(tmp_path))
  assert found.layout == 'rwf2000' and found.classes == ('NonFight', 'Fight')
  split_of = layouts.assign_splits(found.candidates, ingest.SplitConfig().fractions(), 42)
  by_group = collections.defaultdict(set)
  for c in found.candidates:
    split = split_of[c.video_id]
    assert (split == 'test') == c.path.startswith('val/'), (c.path, split)  # val → test
    by_group[c.group].add(split)
  assert by_group['Fyt3'] and all(len(s) == 1 for s in by_group.values()), by_group
  assert len(by_group) == 16  # <youtubeID>_<k>: the stem without its last _<k>
  for label in (0, 1):  # eval carved out of train, for each class
    assert any(split_of[c.video_id] == 'eval' and c.label == label for c in found.candidates)


def test_hockey_flat_names(tmp_path):
  root = _touch(tmp_path, 'fi1_xvid.avi', 'fi12_xvid.avi', 'no1_xvid.avi', 'no7_xvid.avi')
  found = layouts.scan(root, layouts.DatasetConfig(layout='hockey'))
  assert {c.path: found.classes[c.label] for c in found.candidates} == {
      'fi1_xvid.avi': 'Fight', 'fi12_xvid.avi': 'Fight', 'no1_xvid.avi': 'NonFight',
      'no7_xvid.avi': 'NonFight'}
  _touch(tmp_path, 'clip3.avi')
  found = layouts.scan(root, layouts.DatasetConfig(layout='hockey'))
  assert "neither 'fi'" in dict(found.skipped)['clip3.avi']


def test_folders_multiclass_with_class_order(tmp_path):
  root = _touch(tmp_path, 'Abuse/a1.mp4', 'Fighting/f1.mp4', 'Normal/n1.mp4', 'Normal/n2.mp4',
                'Arson/x.mp4', 'Normal/notes.txt')
  found = layouts.scan(root, layouts.DatasetConfig(classes=('Normal', 'Abuse', 'Fighting')))
  assert found.layout == 'folders' and found.classes == ('Normal', 'Abuse', 'Fighting')
  assert {c.path: c.label for c in found.candidates} == {
      'Abuse/a1.mp4': 1, 'Fighting/f1.mp4': 2, 'Normal/n1.mp4': 0, 'Normal/n2.mp4': 0}
  skipped = dict(found.skipped)
  assert 'unknown class folder' in skipped['Arson/x.mp4']
  assert 'unsupported extension' in skipped['Normal/notes.txt']


def test_unlabeled_takes_every_video_anywhere_into_train(tmp_path):
  root = _touch(tmp_path, 'cam1/2024-01-02/a.mp4', 'b.avi', 'Violence/c.mp4', 'notes.txt')
  found = layouts.scan(root, layouts.DatasetConfig(layout='unlabeled'))
  assert found.classes == (layouts.UNLABELED_CLASS,) and not found.warnings
  assert sorted(c.path for c in found.candidates) == [
      'Violence/c.mp4', 'b.avi', os.path.join('cam1', '2024-01-02', 'a.mp4')]
  assert {c.allowed for c in found.candidates} == {('train',)}
  assert 'unsupported extension' in dict(found.skipped)['notes.txt']
  assert layouts.detect(root) != 'unlabeled'  # only when asked for


def test_positive_class_is_label_one_of_a_binary_set(tmp_path):
  root = _touch(tmp_path, 'fights/a.mp4', 'calm/b.mp4')
  assert layouts.scan(root).classes == ('calm', 'fights')
  found = layouts.scan(root, layouts.DatasetConfig(positive_class='calm'))
  assert found.classes == ('fights', 'calm')
  with pytest.raises(layouts.LayoutError, match="positive class 'riot'"):
    layouts.scan(root, layouts.DatasetConfig(positive_class='riot'))
  with pytest.raises(layouts.LayoutError, match='does not have the rwf2000 layout'):
    layouts.scan(root, layouts.DatasetConfig(layout='rwf2000'))  # an explicit layout wins


def test_csv_rows_with_group_and_split(tmp_path):
  _touch(tmp_path, *[f'v/{i}.mp4' for i in range(8)])
  (tmp_path / 'set.csv').write_text(
      'path,label,group,split\n' + ''.join(
          f'v/{i}.mp4,{"fight" if i % 2 else "calm"},{"g" if i < 4 else ""},'
          f'{"test" if i == 7 else ""}\n' for i in range(8)) + 'v/9.mp4,calm,,holdout\n')
  found = layouts.scan(str(tmp_path / 'set.csv'))
  assert found.layout == 'csv' and found.root == str(tmp_path)
  assert layouts.detect(str(tmp_path)) == 'csv'  # a folder holding one CSV beside its videos
  assert len(found.candidates) == 8 and 'unknown split' in dict(found.skipped)['v/9.mp4']
  split_of = layouts.assign_splits(found.candidates, ingest.SplitConfig().fractions(), 0)
  assert split_of['v/7'] == 'test'
  assert len({split_of[f'v/{i}'] for i in range(4)}) == 1  # one group, one split


def test_group_regex_keeps_related_videos_together(tmp_path):
  paths = [f'Violence/cam{g}_part{k}.mp4' for g in range(6) for k in range(3)] + [
      f'NonViolence/cam{g}_part{k}.mp4' for g in range(6, 12) for k in range(3)]
  root = _touch(tmp_path, *paths)
  config = layouts.DatasetConfig(group_regex=r'(cam\d+)_')
  found = layouts.scan(root, config)
  split_of = layouts.assign_splits(found.candidates, ingest.SplitConfig().fractions(), 3)
  splits_of_group = collections.defaultdict(set)
  for c in found.candidates:
    splits_of_group[c.group].add(split_of[c.video_id])
  assert len(splits_of_group) == 12 and all(len(s) == 1 for s in splits_of_group.values())
  assert set().union(*splits_of_group.values()) == set(ingest.SPLITS)


def _records(out, split):
  files = sorted(glob.glob(os.path.join(out, split, '*.tfrecord')))
  return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def _videos(video_root, cls):
  return sorted(glob.glob(os.path.join(video_root, cls, '*.mp4')))


def test_bad_file_takes_no_split_slot(video_root, tmp_path):
  """A 0-byte file must not take the only NonViolence test slot."""
  root = tmp_path / 'in'
  for cls in ('Violence', 'NonViolence'):
    os.makedirs(root / cls)
    for i, src in enumerate(_videos(video_root, cls)[:3]):
      shutil.copy(src, root / cls / f'{"V" if cls == "Violence" else "NV"}_{i}.mp4')
  (root / 'NonViolence' / 'zero.mp4').write_bytes(b'')
  out = str(tmp_path / 'out')
  summary = ingest.ingest(str(root), out, clip=TINY_CLIP, workers=1, progress=False)
  assert summary.clips['test'] == {'NonViolence': 1, 'Violence': 1}, summary.clips
  manifest = {e['path']: e for e in ingest.read_manifest(out)}
  assert 'split' not in manifest['NonViolence/zero.mp4']


def test_ingest_rwf2000_writes_classes_and_keeps_val_as_test(video_root, tmp_path):
  root = tmp_path / 'rwf'
  videos = _videos(video_root, 'Violence') + _videos(video_root, 'NonViolence')
  for i, src in enumerate(videos[:12]):
    part = 'val' if i % 4 == 3 else 'train'
    cls = 'Fight' if 'Violence' in src and 'NonViolence' not in src else 'NonFight'
    os.makedirs(root / part / cls, exist_ok=True)
    shutil.copy(src, root / part / cls / f'{part}yt{i // 2}_{i % 2}.mp4')
  out = str(tmp_path / 'out')
  rc = cli.main(['ingest', '--input', str(root), '--output', out, '--frame-size', '32x32',
                 '--workers', '1'])
  assert rc == 0
  with open(os.path.join(out, ingest.SUMMARY)) as f:
    summary = json.load(f)
  assert summary['classes'] == ['NonFight', 'Fight'] and summary['layout'] == 'rwf2000'
  for e in ingest.read_manifest(out):
    assert e['class'] == summary['classes'][e['label']]
    assert (e['split'] == 'test') == e['path'].startswith('val/')
  groups = collections.defaultdict(set)
  for split in ingest.SPLITS:
    for ex in _records(out, split):
      path = ex.features.feature[features.SOURCE_PATH].bytes_list.value[0].decode()
      groups[layouts.group_of(path, layouts.DatasetConfig(), 'rwf2000')].add(split)
  assert all(len(s) == 1 for s in groups.values()), groups
  assert sum(summary['clips']['eval'].values()) >= 1  # carved out of train


def test_records_are_written_in_a_seeded_shuffled_order(clips_dir):
  labels = [ex.features.feature[features.LABEL].int64_list.value[0]
            for ex in _records(clips_dir, 'train')]
  assert set(labels) == {0, 1} and labels != sorted(labels) and labels != sorted(
      labels, reverse=True)


def test_cli_ingest_bad_layout_settings_are_one_line(video_root, tmp_path, capsys):
  rc = cli.main(['ingest', '--input', video_root, '--output', str(tmp_path / 'o'),
                 '--positive-class', 'Riot'])
  err = capsys.readouterr().err
  assert rc == 1 and "positive class 'Riot'" in err and 'Traceback' not in err
  assert not os.path.exists(tmp_path / 'o')
