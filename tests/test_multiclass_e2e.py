"""Three classes end to end: folders layout → ingest → Trainer (3 logits) → TFMA multi-class
metrics → serving output [B, 3] → clip config and `predict` with class names → report; with
the temporal sampling rule (4 fps, 3 s kept, 2 views averaged: video-level metrics)."""
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx import cli
from vivit_tfx.audit import run_summary, tfma_results
from vivit_tfx.data import ingest
from vivit_tfx.inference import predict
from vivit_tfx.pipeline import local_runner
from tests.conftest import TINY_CLIP, tiny_config

pytestmark = pytest.mark.e2e

CLASSES = ['Normal', 'Abuse', 'Fighting']


@pytest.fixture(scope='module')
def three_class_run(video_root, tmp_path_factory):
  root = tmp_path_factory.mktemp('three')
  videos = sorted(glob.glob(os.path.join(video_root, '*', '*.*')))
  for i, src in enumerate(videos[:18]):  # 6 videos per class folder
    folder = root / 'videos' / sorted(CLASSES)[i % 3]
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, folder / f'{i:02d}{os.path.splitext(src)[1]}')
  clips = str(root / 'clips')
  rule = dict(sample_fps=4.0, max_duration_s=3.0)
  summary = ingest.ingest(str(root / 'videos'), clips,
                          clip=ingest.ClipConfig(TINY_CLIP.num_frames, TINY_CLIP.frame_size,
                                                 **rule),
                          dataset=ingest.DatasetConfig(classes=tuple(CLASSES)), workers=1,
                          progress=False)
  assert summary.classes == CLASSES and summary.layout == 'folders'
  config = tiny_config(clips, root / 'out', train_steps=2, steps_per_epoch=2, num_views=2,
                       **rule)
  summary = run_summary.summarize(config, local_runner.run_pipeline(config))
  return config, summary, str(root / 'videos')


def test_tfma_reports_multiclass_metrics(three_class_run):
  config, summary, _ = three_class_run
  assert summary.executions['Evaluator'] == 'COMPLETE' and summary.pushed_model
  metrics = summary.test_metrics
  assert 'sparse_categorical_accuracy' in metrics and 'binary_accuracy' not in metrics
  assert tfma_results.readable('recall[classId:2]', CLASSES) == 'recall[Fighting]'
  test_videos = sum(1 for e in ingest.read_manifest(config.clips_dir) if e.get('split') == 'test')
  assert metrics['example_count'] == test_videos  # one example per video: K views averaged
  evaluation = glob.glob(os.path.join(summary.pipeline_root, 'Evaluator', 'evaluation', '*'))
  cm = tfma_results.multiclass_confusion(tfma_results.load(evaluation[0]))['matrix']
  assert len(cm) == 3 and sum(map(sum, cm)) == test_videos  # argmax: every video predicted
  # Per-class precision and recall by argmax: the confusion matrix's columns and rows.
  for i in range(3):
    row, column = sum(cm[i]), sum(r[i] for r in cm)
    if row:
      assert metrics[f'recall[classId:{i}]'] == pytest.approx(cm[i][i] / row), (i, cm, metrics)
    if column:
      assert metrics[f'precision[classId:{i}]'] == pytest.approx(cm[i][i] / column), (i, cm)
  assert metrics['sparse_categorical_accuracy'] == pytest.approx(
      sum(cm[i][i] for i in range(3)) / test_videos)


def test_serving_and_predict_speak_class_names(three_class_run, capsys):
  config, summary, videos = three_class_run
  model_dir = summary.pushed_model
  clip = predict.clip_config_of(model_dir)
  assert list(clip.class_names) == CLASSES
  assert (clip.sample_fps, clip.num_views, clip.stored_frames) == (4.0, 2, 12)
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  assert serve.structured_outputs['probabilities'].shape.as_list() == [None, 3]
  frame = tf.io.encode_jpeg(tf.zeros([32, 32, 3], tf.uint8)).numpy()
  for count, ok in ((8, True), (3, True), (13, False)):  # a record holds 12 frames (4 fps, 3 s)
    example = tf.train.Example()
    example.features.feature['frames'].bytes_list.value.extend([frame] * count)
    if ok:
      assert serve(examples=tf.constant([example.SerializeToString()]))[
          'probabilities'].shape == (1, 3)
    else:
      with pytest.raises(tf.errors.InvalidArgumentError, match='1 to 12 frames.*T is 8'):
        serve(examples=tf.constant([example.SerializeToString()]))
  video = sorted(glob.glob(os.path.join(videos, 'Abuse', '*')))[0]
  rc = cli.main(['predict', video, '--model-dir', model_dir, '--json'])
  out = json.loads(capsys.readouterr().out)['predictions'][0]
  assert rc == 0 and out['label'] in CLASSES and set(out['probabilities']) == set(CLASSES)
  assert abs(sum(out['probabilities'].values()) - 1.0) < 1e-4
  rc = cli.main(['predict', video, '--model-dir', model_dir])
  line = capsys.readouterr().out.splitlines()[-1]
  assert line.startswith(f'{video}: ') and line.split(': ')[1].split(' ')[0] in CLASSES


def test_report_names_the_classes(three_class_run):
  from vivit_tfx.audit import report  # pylint: disable=g-import-not-at-top
  config, summary, _ = three_class_run
  with open(report.build(config, summary.run_id)) as f:
    page = f.read()
  assert '<th>Fighting</th>' in page and 'recall[Fighting]' in page
  assert 'NonViolence' not in page


def test_bench_views_scores_clips_and_videos(three_class_run):
  from vivit_tfx.bench import views_bench  # pylint: disable=g-import-not-at-top
  config, summary, _ = three_class_run
  row = views_bench.accuracies(summary.pushed_model, config.clips_dir)
  assert row['videos'] == summary.test_metrics['example_count'] and row['views_per_video'] == 2
  assert 0 <= row['clip_level_accuracy'] <= 1 and 0 <= row['video_level_accuracy'] <= 1


def test_watch_scores_the_named_positive_probability_not_p1(three_class_run):
  from vivit_tfx.inference import watch  # pylint: disable=g-import-not-at-top
  _, summary, _ = three_class_run
  frames = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
  scorer = watch.Scorer(summary.pushed_model, (8, 32, 32))
  score = scorer(watch.Window(frames, 0.0, 1.0, 0.0, 0.0, lambda: frames[-1]))
  clip = predict.clip_config_of(summary.pushed_model)
  example = tf.train.Example()
  example.features.feature['frames'].bytes_list.value.extend(
      [tf.io.encode_jpeg(f, quality=90).numpy() for f in frames])
  p = tf.saved_model.load(summary.pushed_model).signatures['serving_default'](
      examples=tf.constant([example.SerializeToString()]))['probabilities'].numpy()[0]
  # No positive class named: P(not the first class), as predict and the timeline report it.
  assert clip.positive_index is None
  assert score == pytest.approx(1.0 - p[0], abs=1e-5) and abs(score - p[1]) > 1e-4
