"""The temporal sampling rule: frames at a fixed rate, K evaluation views, a random clip per
training visit, and the same timestamps for evaluation's views and for `predict`."""
import glob
import os

import numpy as np
import tensorflow as tf

from vivit_tfx.data import ingest, sampling, video_reader
from vivit_tfx.data import features
from vivit_tfx.data.video_reader import VideoInfo
from vivit_tfx.inference import predict
from vivit_tfx.models.trainer import clip_views


def _slots(n, stored):
  return tf.constant([[str(i).encode() for i in range(n)] + [b''] * (stored - n)])


def _ints(clips):
  return [[int(v) for v in row] for row in clips.numpy().astype(str)]


def test_rate_indices_take_the_central_seconds():
  # 2.9 s at 10 fps sampled at 4 fps: every 3rd frame (3.3 fps: 5 fps is further from 4 as a
  # ratio), 9 frames, centred (frames 1 to 27 of 0 to 28).
  assert sampling.rate_indices(29, 10.0, 4.0, 12) == list(range(1, 26, 3))
  # A 60 s video keeps only its central max_frames / sample_fps seconds: every 8th frame
  # (3.75 fps), 37 frames, 9.87 s.
  idx = sampling.rate_indices(1800, 30.0, 4.0, 40)
  assert idx == list(range(752, 752 + 37 * 8, 8))


def test_views_are_segment_centres_and_short_clips_loop():
  frames = _slots(10, 12)  # 10 frames in 12 slots
  starts = clip_views.view_starts(clip_views.valid_counts(frames), 4, 2)
  assert starts.numpy().tolist() == [[1, 4]]
  assert _ints(clip_views.gather_clips(frames, starts, 4)[0]) == [[1, 2, 3, 4], [4, 5, 6, 7]]
  assert _ints(clip_views.central_clip(frames, 4)) == [[3, 4, 5, 6]]
  short = _slots(2, 12)
  assert _ints(clip_views.central_clip(short, 4)) == [[0, 1, 0, 1]]
  records = clip_views.view_records(frames, 4, 2)  # [B*K, N], each the central clip of itself
  assert records.shape == (2, 12)
  assert _ints(clip_views.central_clip(records, 4)) == [[1, 2, 3, 4], [4, 5, 6, 7]]


def test_training_draws_every_clip_position():
  frames = tf.repeat(_slots(10, 12), 400, axis=0)
  records = clip_views.random_clip_records(frames, 4)  # [400, 12]
  assert set(clip_views.valid_counts(records).numpy()) == {4}
  firsts = {int(r[0]) for r in records.numpy()[:, :1].astype(str)}
  assert set(range(7)) <= firsts <= set(range(8))  # every start 0..n-T is drawn


def test_training_clips_step_evenly_over_the_stored_frames():
  """Consecutive stored frames: no repeated or skipped frame (a fractional speed, 0.8-1.25x
  before, did one or the other in most clips: jerks that look like strikes)."""
  tf.random.set_seed(0)
  records = clip_views.random_clip_records(tf.repeat(_slots(40, 40), 2000, axis=0), 8)
  index = np.array(_ints(records[:, :8]))  # [B, T] stored frames of each training clip
  assert (np.diff(index, axis=1) == 1).all()
  slower = clip_views.random_clip_records(tf.repeat(_slots(40, 40), 200, axis=0), 8,
                                          max_speed=1.25)  # still an option of the graph
  assert (np.diff(np.array(_ints(slower[:, :8])), axis=1) != 1).any()


def test_predict_reports_the_view_timestamps():
  clip = predict.ModelClipConfig(num_frames=4, sample_fps=4.0, max_duration_s=3.0, num_views=2)
  times = predict.view_timestamps(VideoInfo(27, 10.0, 64, 48), clip)
  assert times == [[0.3, 0.6, 0.9, 1.2], [0.9, 1.2, 1.5, 1.8]]  # every 3rd frame: 3.3 fps


def test_evaluation_views_and_predict_use_the_same_frames(video_root, tmp_path):
  path = max(sorted(glob.glob(os.path.join(video_root, 'Violence', '*.mp4'))),
             key=lambda p: video_reader.probe(p).duration_s)  # the longest: views differ
  clip = predict.ModelClipConfig(num_frames=4, frame_size=(32, 32), sample_fps=8.0,
                                 max_duration_s=3.0, num_views=3)
  ingest.ingest(os.path.dirname(os.path.dirname(path)), str(tmp_path / 'out'),
                clip=ingest.ClipConfig(4, (32, 32), sample_fps=8.0, max_duration_s=3.0),
                workers=1, progress=False)
  records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(
      glob.glob(str(tmp_path / 'out' / '*' / '*.tfrecord')))]
  rel = os.path.relpath(path, video_root)
  stored = next(r for r in records if r.features.feature[features.SOURCE_PATH].bytes_list.value[
      0].decode() == rel).features.feature[features.FRAMES].bytes_list.value
  sent = tf.train.Example.FromString(predict.serialized_clip(path, clip)).features.feature[
      features.FRAMES].bytes_list.value
  assert list(stored) == list(sent) and len(stored) == clip.stored_frames == 24
  # The frames serving_default's views take from the record ...
  frames = tf.constant([list(stored)])
  views = clip_views.gather_clips(frames, clip_views.view_starts(
      clip_views.valid_counts(frames), 4, 3), 4)[0].numpy()  # [K, T]
  # ... are the source frames at the timestamps predict reports.
  info = video_reader.probe(path)
  times = predict.view_timestamps(info, clip)
  index = {i: slot for slot, i in enumerate(sampling.rate_indices(
      info.num_frames, info.fps, 8.0, clip.stored_frames))}
  for view, seconds in zip(views, times):
    assert [stored[index[int(round(t * info.fps))]] for t in seconds] == list(view)
  assert len({tuple(t) for t in times}) == 3 and np.all(np.diff(times[0]) > 0)


def test_the_rate_rule_is_the_default_everywhere():
  """ingest, `run` and a model's clip config default to one rule: 8 fps, K = 4 views (the
  whole-video rule, sample_fps 0, only when asked for, or for models that name no rate)."""
  from vivit_tfx import cli  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  run = configs.PipelineConfig().resolve()
  assert run.clip_config() == ingest.ClipConfig()
  assert (run.sample_fps, run.num_views, ingest.ClipConfig().stored_frames) == (8.0, 4, 80)
  args = cli.build_parser().parse_args(['ingest'])
  assert (args.sample_fps, args.max_duration_s, args.num_frames) == (8.0, 10.0, 8)
  assert predict.ModelClipConfig().sample_fps == 0.0  # a clip config without a rate


def test_ingest_reports_bytes_per_video(video_root, tmp_path):
  one_clip = ingest.ingest(video_root, str(tmp_path / 'a'), workers=1, progress=False,
                           clip=ingest.ClipConfig(8, (32, 32), sample_fps=0.0))
  rate = ingest.ingest(video_root, str(tmp_path / 'b'), workers=1, progress=False,
                       clip=ingest.ClipConfig(8, (32, 32), sample_fps=8.0, max_duration_s=3.0))
  files = lambda d: sum(os.path.getsize(f) for f in glob.glob(str(tmp_path / d / '*' / '*')))
  assert 0 < one_clip.bytes_per_video * one_clip.num_written <= files('a')
  assert rate.bytes_per_video > one_clip.bytes_per_video  # more frames kept per video
  assert f'{rate.bytes_per_video:,} bytes per video' in rate.to_text()
