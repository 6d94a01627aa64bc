"""See what the model sees: run report, violence timeline on long videos, attention maps."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from vivit_tfx.data import synthetic, video_reader
from vivit_tfx import cli

from vivit_tfx.inference import explain, predict, timeline

from vivit_tfx.audit import report

pytestmark = pytest.mark.e2e


def _model_dir(config):
  return predict.newest_version(config.serving_dir, config.model_name)


def test_main_job_writes_a_report_with_figures(trained_run):
  config, summary = trained_run
  assert summary.report and os.path.exists(summary.report)
  page = open(summary.report).read()
  folder = os.path.dirname(summary.report)
  for figure in ('curves.png', 'confusion.png', 'calibration.png', 'durations.png'):
    assert f'src="{figure}"' in page and os.path.getsize(os.path.join(folder, figure)) > 1000
  assert 'BLESSED' in page and 'container=mp4' in page and 'Pushed to' in page
  assert '<th>NonViolence</th>' in page  # clips per split and class from the manifest


def test_report_command_for_a_past_run(trained_run, tmp_path, capsys):
  config, summary = trained_run
  rc = cli.main(['report', '--output-root', config.output_root, '--run-id', summary.run_id,
                 '--out-dir', str(tmp_path)])
  assert rc == 0 and os.path.exists(tmp_path / 'index.html')
  assert str(tmp_path / 'index.html') in capsys.readouterr().out


def test_curves_come_from_the_trainer_logs(trained_run):
  config, _ = trained_run
  runs = [os.path.join(r, d) for r, ds, _ in os.walk(config.pipeline_root)
          if r.endswith(os.path.join('Trainer', 'model_run')) for d in ds if d != 'resume']
  curves = report.read_curves(runs[0])
  epochs = config.train_steps // config.steps_per_epoch
  assert len(curves['train']['loss']) == epochs == len(curves['validation']['accuracy'])
  assert curves['train']['loss'][-1] < curves['train']['loss'][0]


def test_plan_windows_and_segments():
  windows = timeline.plan_windows(num_frames=100, fps=10, window_s=2, stride_s=1, clip_frames=4)
  assert len(windows) == 9 and windows[0].indices == [2, 7, 12, 17]
  assert windows[-1].end_s == 10.0
  hour = timeline.plan_windows(num_frames=3600 * 25, fps=25, window_s=2, stride_s=1,
                               clip_frames=8)
  assert len(hour) == 3599 and all(len(w.indices) == 8 for w in hour[:5])
  for w, s in zip(windows, [0.1, 0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.1, 0.95]):
    w.score = s
  assert timeline.segments(windows, 0.5) == [
      {'start_s': 1.0, 'end_s': 4.0, 'peak_score': 0.9},
      {'start_s': 4.0, 'end_s': 6.0, 'peak_score': 0.7},
      {'start_s': 8.0, 'end_s': 10.0, 'peak_score': 0.95}]
  # A dip between overlapping windows does not split a segment into overlapping ones.
  dip = [timeline.Window(t, t + 2.0, [], score=s)
         for t, s in ((0.0, 0.9), (0.5, 0.2), (1.0, 0.8), (3.0, 0.1), (5.0, 0.7))]
  assert timeline.segments(dip, 0.5) == [{'start_s': 0.0, 'end_s': 3.0, 'peak_score': 0.9},
                                         {'start_s': 5.0, 'end_s': 7.0, 'peak_score': 0.7}]


def test_timeline_finds_the_violent_segments(trained_run, tmp_path, capsys):
  config, _ = trained_run
  video = str(tmp_path / 'long.mp4')
  truth = synthetic.long_video(video, [0, 1, 0, 0, 1, 1, 0], segment_s=3.0, seed=3)
  out = str(tmp_path / 'timeline')
  rc = cli.main(['predict', '--timeline', video, '--model-dir', _model_dir(config),
                 '--out-dir', out, '--json'])
  result = json.loads(capsys.readouterr().out)
  assert rc == 0 and os.path.getsize(result['png']) > 1000
  assert json.load(open(result['json']))['segments'] == result['segments']
  violent = [t for t in truth if t['label'] == 1]
  overlap = lambda a, b: max(0.0, min(a['end_s'], b['end_s']) - max(a['start_s'], b['start_s']))
  for t in violent:  # every true violent segment is (at least partly) detected
    assert any(overlap(t, s) > 0 for s in result['segments']), (t, result['segments'])
  detected = sum(s['end_s'] - s['start_s'] for s in result['segments'])
  inside = sum(overlap(t, s) for t in violent for s in result['segments'])
  assert inside >= 0.6 * detected, (result['segments'], truth)


def test_streaming_holds_only_open_windows(tmp_path):
  video = str(tmp_path / 'v.avi')
  synthetic.write_video(video, np.zeros((120, 24, 32, 3), np.uint8), fps=10)
  windows = timeline.plan_windows(120, 10, window_s=2, stride_s=0.5, clip_frames=4)
  seen = [w for w, frames in timeline.stream_windows(video, windows, (16, 16))]
  assert seen == windows  # all windows, in order, each exactly once
  assert all(f.shape == (4, 16, 16, 3) for _, f in timeline.stream_windows(video, windows[:3],
                                                                           (16, 16)))


def _actor_share(video_root, spec, model_dir):
  """Map mass on actor tubelets relative to a uniform map (1.0 = no preference)."""
  path = os.path.join(video_root, spec.relative_path)
  frames, token_map = explain.clip_map(path, model_dir)
  indices = predict.view_indices(video_reader.probe(path), predict.clip_config_of(model_dir),
                                 num_views=1)[0]  # the central clip's source frames
  assert len(indices) == len(frames)
  masks = synthetic.actor_masks(spec, indices, frames.shape[1:3]).astype(float)
  n_t, n_h, n_w = token_map.shape
  t, h, w = masks.shape
  cover = masks.reshape(n_t, t // n_t, n_h, h // n_h, n_w, w // n_w).mean(axis=(1, 3, 5))
  return float((token_map * cover).sum() / cover.mean())


def test_attention_map_shape_and_focus_on_actors(trained_run):
  config, _ = trained_run
  model_dir = _model_dir(config)
  specs = synthetic.plan(synthetic.SyntheticConfig(num_clips=config.synthetic_clips))[:12]
  path = os.path.join(config.videos_dir, specs[1].relative_path)
  _, token_map = explain.clip_map(path, model_dir)
  assert token_map.shape == predict.keras_model(model_dir).config.token_grid
  assert abs(token_map.sum() - 1) < 1e-6 and (token_map >= 0).all()
  shares = [_actor_share(config.videos_dir, s, model_dir) for s in specs]
  assert np.mean(shares) > 1.2, shares  # more mass on the moving actors than on background


def test_a_review_loads_the_model_once(trained_run, monkeypatch):
  """The review page runs predict, the timeline and the attention map on every review: one
  load of the SavedModel and one rebuild of the Keras model per process, not three per
  review; a model written again at the same path is loaded again."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import export  # pylint: disable=g-import-not-at-top
  config, _ = trained_run
  model_dir = _model_dir(config)
  video = os.path.join(config.videos_dir, 'Violence', 'V_0001.mp4')
  loads, rebuilds = [], []
  load, rebuild = tf.saved_model.load, export.load_keras_model
  monkeypatch.setattr(tf.saved_model, 'load', lambda d, *a, **k: (loads.append(d),
                                                                    load(d, *a, **k))[1])
  monkeypatch.setattr(export, 'load_keras_model', lambda d: (rebuilds.append(d), rebuild(d))[1])
  monkeypatch.setattr(predict, '_saved_model_stamp', lambda d: (1,))  # a fresh process's key
  for _ in range(2):  # two reviews of the same video
    assert predict.predict([video], model_dir)[0].error is None
    timeline.score(video, model_dir)
    explain.clip_map(video, model_dir)
  assert (loads, rebuilds) == ([model_dir], [model_dir])
  monkeypatch.setattr(predict, '_saved_model_stamp', lambda d: (2,))  # the model rewritten
  predict.predict([video], model_dir)
  assert loads == [model_dir] * 2


def test_attention_command_writes_strip_and_gif(trained_run, tmp_path):
  config, _ = trained_run
  video = os.path.join(config.videos_dir, 'Violence', 'V_0001.mp4')
  rc = cli.main(['attention', video, '--model-dir', _model_dir(config), '--out-dir',
                 str(tmp_path), '--method', 'gradient'])
  assert rc == 0
  strip = Image.open(tmp_path / 'V_0001.attention.png')
  gif = Image.open(tmp_path / 'V_0001.attention.gif')
  assert gif.n_frames == config.num_frames and strip.width == gif.width * config.num_frames
