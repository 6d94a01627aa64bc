"""TFLite export (`vivit-tfx export`), the model-loading abstraction (`model_scorer`) and the
export benchmark, on the learned test fixture (`trained_run`).

Tolerances, measured on that fixture (the largest |probability difference| from
serving_default over its test videos and a timeline's windows, the most of four sessions):
float32 TFLite 4e-6 (a window at p = 0.93; 6e-8 on the test videos), float16 3.3e-6 (int8:
8e-3); the bounds below leave a margin over them. int8 must give every video the class the SavedModel gives it.
"""
import glob
import json
import os
import time

import keras
import numpy as np
import pytest

from vivit_tfx import cli, outputs
from vivit_tfx.bench import tflite_bench
from vivit_tfx.data import synthetic
from vivit_tfx.inference import model_scorer, predict, timeline, tflite_export

# float32 TFLite (XNNPACK) and TensorFlow (oneDNN) kernels round differently: logits within about
# 5e-4, which moves a probability by up to 1.2e-4 where the sigmoid is steepest (0.5). A wrong
# frame, view or class moves it by far more (the model's scores spread over > 0.5).
FLOAT32_TOLERANCE = 2e-4
FLOAT16_TOLERANCE = 5e-4


@pytest.fixture(scope='module')
def exported(trained_run, tmp_path_factory):
  """(model_dir, clips_dir, {quantize: .tflite path}) of the fixture model, all three."""
  config, summary = trained_run
  out = str(tmp_path_factory.mktemp('tflite'))
  start = time.perf_counter()
  done = tflite_export.export_tflite(summary.pushed_model, out, tflite_export.QUANTIZATIONS,
                                     config.clips_dir, calibration_count=32)
  print(f'export of all three: {time.perf_counter() - start:.1f} s')
  return summary.pushed_model, config, {e.quantize: e.path for e in done}


@pytest.fixture(scope='module')
def test_split(exported):
  """(records [R][N], labels [R], serving_default's probabilities [R, P])."""
  model_dir, config, _ = exported
  records, labels = tflite_export.split_records(config.clips_dir, 'test')
  return records, labels, model_scorer.SavedModelScorer(model_dir).score_records(records)


def _classes(probs):
  return np.array([predict.predicted_label(p) for p in probs])


def test_float_tflite_equals_the_savedmodel(exported, test_split):
  _, _, files = exported
  records, labels, reference = test_split
  assert np.ptp(reference) > 0.5  # a learned model: a wrong frame or view would show
  for quantize, tolerance in (('none', FLOAT32_TOLERANCE), ('float16', FLOAT16_TOLERANCE)):
    scorer = model_scorer.load_scorer(files[quantize])
    assert isinstance(scorer, model_scorer.TFLiteScorer)
    probs = scorer.score_records(records)
    print(quantize, 'largest difference', np.abs(probs - reference).max())
    np.testing.assert_allclose(probs, reference, atol=tolerance)


def test_int8_keeps_every_class(exported, test_split):
  _, _, files = exported
  records, labels, reference = test_split
  probs = model_scorer.load_scorer(files['int8']).score_records(records)
  print('int8 largest difference', np.abs(probs - reference).max())
  np.testing.assert_array_equal(_classes(probs), _classes(reference))
  assert np.mean(_classes(probs) == labels) >= 0.9
  config = json.load(open(files['int8'][:-len('.tflite')] + '.clip_config.json'))
  assert config['tflite']['quantize'] == 'int8'
  assert config['tflite']['calibration']['split'] == 'train'
  assert config['tflite']['calibration']['clips'] == 32
  assert config['tflite']['int8'] == 'norm-float'


def test_a_batch_of_any_size_is_scored_in_fixed_chunks_as_each_clip_alone(exported, test_split):
  """`watch` scores one window per waiting camera: the batch size changes every call. The
  scorer never resizes an interpreter: 7 clips go as 4 + 2 + 1 to interpreters made once."""
  _, _, files = exported
  records, _, _ = test_split
  assert model_scorer.TFLiteScorer.chunks(21) == [16, 4, 1]
  assert model_scorer.TFLiteScorer.chunks(32) == [16, 16]
  assert model_scorer.TFLiteScorer.chunks(0) == []
  scorer = model_scorer.load_scorer(files['none'])
  clips = model_scorer.jpeg_pixels([model_scorer.record_views(r, scorer.clip)[0]
                                    for r in records[:7]], scorer.clip)  # [7, T, H, W, 3]
  alone = np.concatenate([scorer.score_pixels(c[None]) for c in clips])
  assert np.ptp(alone) > 1e-3  # distinct scores: a chunk scored in the wrong place would show
  np.testing.assert_allclose(scorer.score_pixels(clips), alone, atol=1e-6)
  np.testing.assert_allclose(scorer.score_pixels(clips[:3]), alone[:3], atol=1e-6)
  assert sorted(scorer._interpreters) == [1, 2, 4]  # pylint: disable=protected-access
  assert scorer.score_pixels(clips[:0]).shape == (0, 1)


def test_int8_keeps_the_normalisation_layers_in_float(exported):
  """`--int8 norm-float` (the default): GroupNorm's and LayerNorm's statistics stay float,
  the convolutions and dense layers around them are int8."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  details = tf.lite.Interpreter(model_path=exported[2]['int8']).get_tensor_details()
  moments = [t for t in details if '/moments/' in t['name']]
  assert moments and all(t['dtype'] == np.float32 for t in moments)
  assert sum(t['dtype'] == np.int8 for t in details) > len(details) // 3
  with pytest.raises(tflite_export.ExportError, match='--int8 fast: one of norm-float, full'):
    tflite_export.convert(None, 'int8', np.zeros((1,)), 'fast')


def test_predict_and_timeline_take_a_tflite_file(exported, tmp_path):
  model_dir, config, files = exported
  videos = sorted(glob.glob(os.path.join(config.videos_dir, '*', '*.mp4')))[::10][:4]
  videos.append(os.path.join(config.videos_dir, 'no-such-video.mp4'))
  saved = predict.predict(videos, model_dir)
  lite = predict.predict(videos, files['none'])
  assert lite[-1].error and saved[-1].error == lite[-1].error  # a bad file: its own line
  for s, t in zip(saved[:-1], lite[:-1]):
    assert s.label == t.label
    np.testing.assert_allclose(list(t.probabilities.values()), list(s.probabilities.values()),
                               atol=FLOAT32_TOLERANCE)
  long = str(tmp_path / 'long.mp4')
  synthetic.long_video(long, [0, 1], segment_s=2.0)
  _, windows = timeline.score(long, model_dir, stride_s=0.5)
  _, lite_windows = timeline.score(long, files['none'], stride_s=0.5)
  assert len(windows) == len(lite_windows) > 1
  np.testing.assert_allclose([w.score for w in lite_windows], [w.score for w in windows],
                             atol=FLOAT32_TOLERANCE)


def test_a_tflite_model_carries_its_savedmodels_drift_statistics(exported, tmp_path):
  """A .tflite model carried no training split statistics: scan and watch checked no drift."""
  import io  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import drift_stats  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import watch, watch_drift  # pylint: disable=g-import-not-at-top
  model_dir, _, files = exported
  saved = drift_stats.model_reference(model_dir)
  assert saved is not None and drift_stats.reference_clips(saved) > 0
  for path in files.values():
    assert drift_stats.reference_path(path) == path[:-len('.tflite')] + (
        '.drift_reference.stats.pbtxt')
    assert drift_stats.model_reference(path) == saved
  said = []
  check = watch_drift.start(files['int8'], watch.WatchConfig(
      source='cam', model_dir=files['int8'], drift_interval_s=5.0),
                            io.StringIO(), said.append)
  assert check is not None and 'against the training split' in said[0], said


def test_cli_predict_on_tflite(exported, capsys):
  _, config, files = exported
  video = sorted(glob.glob(os.path.join(config.videos_dir, '*', '*.mp4')))[0]
  assert cli.main(['predict', video, '--model-dir', files['float16'], '--json']) == 0
  out = json.loads(capsys.readouterr().out)
  assert out['model'] == files['float16'] and out['predictions'][0]['label']


def test_export_never_writes_into_the_model_or_over_a_users_file(exported, tmp_path, capsys):
  model_dir = exported[0]
  before = sorted(os.listdir(model_dir))
  inside = os.path.join(model_dir, 'tflite')
  assert cli.main(['export', '--model-dir', model_dir, '--out-dir', inside]) == 1
  assert 'is inside the model' in capsys.readouterr().err
  assert sorted(os.listdir(model_dir)) == before and not os.path.exists(inside)
  users = tmp_path / 'float32.tflite'
  users.write_bytes(b'my own model')
  with pytest.raises(outputs.OutputExists):
    tflite_export.export_tflite(model_dir, str(tmp_path))
  assert users.read_bytes() == b'my own model'
  assert sorted(os.listdir(tmp_path)) == ['float32.tflite']  # nothing else written
  assert cli.main(['export', '--model-dir', model_dir, '--out-dir', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and 'was not written by vivit-tfx' in err


def test_int8_without_train_clips_is_one_line(exported, tmp_path, capsys):
  model_dir = exported[0]
  assert cli.main(['export', '--model-dir', model_dir, '--quantize', 'int8', '--int8', 'full',
                   '--clips-dir', str(tmp_path / 'nothing'),
                   '--out-dir', str(tmp_path / 'out')]) == 1
  err = capsys.readouterr().err
  assert 'no *.tfrecord files' in err and len(err.strip().splitlines()) == 1
  assert not os.path.exists(tmp_path / 'out')


@pytest.mark.parametrize('size', [(1, 2, 2), (2, 2, 2), (2, 3, 2)])
def test_builtin_tokenizer_layers_equal_the_3d_ones(size):
  x = np.random.default_rng(0).normal(size=(2, 7, 12, 10, 4)).astype('float32')
  np.testing.assert_array_equal(tflite_export.FramewiseMaxPool3D(size)(x),
                                keras.layers.MaxPool3D(size)(x))
  for kernel, padding in ((size, 'same'), ((3, 3, 3), 'same'), ((2, 3, 3), 'valid')):
    conv = keras.layers.Conv3D(5, kernel, strides=size, padding=padding)
    expected = conv(x)
    np.testing.assert_allclose(tflite_export.FramewiseConv3D(conv)(x), expected, atol=1e-5)


def test_bench_export_on_the_fixture(exported, test_split):
  model_dir, config, files = exported
  rows = tflite_bench.measure(model_dir, config.clips_dir, 'test', files=[files['float16']])
  assert [r['model'] for r in rows] == ['SavedModel float32', 'TFLite float16']
  assert rows[0]['max_abs_diff'] == 0 and rows[1]['max_abs_diff'] <= FLOAT16_TOLERANCE
  assert rows[0]['videos'] == len(test_split[1]) and rows[1]['classes_changed'] == 0
  assert rows[1]['accuracy'] == rows[0]['accuracy'] >= 0.9
  assert 'TFLite float16 met' in tflite_bench.goal_line(rows)
  assert tflite_bench.format_table(rows).count('\n') == 3  # header, rule, two rows


def test_bench_export_goal_and_dispatch():
  rows = [{'model': 'SavedModel float32', 'accuracy': 0.90},
          {'model': 'TFLite float16', 'accuracy': 0.899},
          {'model': 'TFLite int8', 'accuracy': 0.885}]
  assert tflite_bench.goal_line(rows) == ('goal: TFLite float16 met (at most 0.2 points lost); '
                                          'TFLite int8 NOT met (at most 1.0 points lost)')
  assert tflite_bench.wanted(['--split', 'test']) and tflite_bench.wanted(['--split=test'])
  assert not tflite_bench.wanted(['--presets', 'vivit-tiny']) and not tflite_bench.wanted([])


# --- `run --tflite`: the TFLiteExport step after the Pusher ---------------------------------
# (the step end to end, on a pipeline rerun: tests/test_pipeline_e2e.py)
def _artifact(kind, uri, **properties):
  artifact = kind()
  artifact.uri = str(uri)
  for name, value in properties.items():
    (artifact.set_int_custom_property if isinstance(value, int) else
     artifact.set_string_custom_property)(name, value)
  return artifact


def _step(tmp_path, destination, pushed, out, quantize):
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from vivit_tfx.components.tflite_export import TFLiteExport, TFLiteModel  # pylint: disable=g-import-not-at-top
  os.makedirs(out)
  artifact = _artifact(TFLiteModel, out)
  TFLiteExport.test_call(
      model=_artifact(standard_artifacts.Model, tmp_path / 'no-model'),
      pushed_model=_artifact(standard_artifacts.PushedModel, tmp_path / 'pushed', pushed=pushed,
                             pushed_destination=str(destination)),
      examples=_artifact(standard_artifacts.Examples, tmp_path / 'no-examples'),
      tflite_model=artifact, quantize=quantize)
  return artifact


def test_run_tflite_never_replaces_a_file_and_skips_an_unpushed_model(tmp_path):
  destination = tmp_path / 'serving' / 'vivit_violence' / '1700000000'
  destination.mkdir(parents=True)
  users = destination.parent / '1700000000.float16.clip_config.json'
  users.write_text('mine')
  with pytest.raises(FileExistsError, match='float16.clip_config.json exists'):
    _step(tmp_path, destination, 1, tmp_path / 'a', 'none,float16')
  assert users.read_text() == 'mine' and not os.listdir(tmp_path / 'a')  # before converting
  assert sorted(os.listdir(destination.parent)) == ['1700000000', users.name]
  artifact = _step(tmp_path, destination, 0, tmp_path / 'b', 'int8')
  assert artifact.get_int_custom_property('pushed') == 0 and not os.listdir(tmp_path / 'b')
  with pytest.raises(ValueError, match='--tflite'):
    _step(tmp_path, destination, 1, tmp_path / 'c', 'int4')


def test_run_tflite_option_adds_the_step_after_the_pusher(tmp_path):
  from vivit_tfx.pipeline import configs, pipeline  # pylint: disable=g-import-not-at-top
  # (without --tflite there is no such step: test_pipeline_e2e's list of components)
  with_tflite = pipeline.create_pipeline(configs.PipelineConfig(output_root=str(tmp_path),
                                                                tflite='float16,int8'))
  step = next(c for c in with_tflite.components if c.id == 'TFLiteExport')
  assert {u.id for u in step.upstream_nodes} == {'Trainer', 'Pusher', 'ImportExampleGen'}
  assert step.exec_properties['quantize'] == 'float16,int8'
  assert step.outputs['tflite_model'].type_name == 'vivit_tfx.TFLiteModel'
  assert configs.option_errors({'tflite': 'int8,int4'}) == [
      '--tflite must list some of none, float16, int8 (comma-separated), got int8,int4']
  assert configs.option_errors({'tflite': 'none, int8'}) == []
