"""The one sampling rule (`data.sampling`): the indices every user got before it was
shared (literals recorded from the separate functions it replaced) and the graph's agreement."""
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import sampling, video_reader
from vivit_tfx.inference import predict, timeline
from vivit_tfx.models import clip_views

# (num_frames, fps, sample_fps, max_frames) → the indices ingestion stored before the rule was
# shared: records must stay byte-identical.
INGEST = [
    ((27, 10.0, 4.0, 12), [1, 3, 6, 8, 11, 13, 16, 18, 21, 23]),
    ((300, 25.0, 8.0, 16), [125, 128, 131, 134, 137, 140, 143, 146, 150, 153, 156, 159, 162,
                            165, 168, 171]),
    ((1800, 30.0, 4.0, 40), [750, 757, 765, 772, 780, 787, 795, 802, 810, 817, 825, 832, 840,
                             847, 855, 862, 870, 877, 885, 892, 900, 907, 915, 922, 930, 937,
                             945, 952, 960, 967, 975, 982, 990, 997, 1005, 1012, 1020, 1027,
                             1035, 1042]),
    ((61, 29.97, 8.0, 32), [0, 4, 8, 11, 15, 19, 23, 26, 30, 34, 37, 41, 45, 49, 52, 56]),
    ((45, 0.0, 8.0, 16), [0, 3, 6, 10, 13, 16, 19, 22, 25, 28, 31, 35, 38, 41]),
    ((3, 30.0, 8.0, 16), [0]),
    ((250, 24.0, 5.0, 20), [77, 81, 86, 91, 96, 101, 105, 110, 115, 120, 125, 129, 134, 139,
                            144, 149, 153, 158, 163, 168]),
    ((100, 7.5, 3.0, 64), [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37, 40, 42,
                           45, 47, 50, 52, 55, 57, 60, 62, 65, 67, 70, 72, 75, 77, 80, 82, 85,
                           87, 90, 92, 95, 97]),
]
UNIFORM = [((300, 8), [18, 56, 93, 131, 168, 206, 243, 281]), ((5, 8), [0, 1, 2, 3, 4, 0, 1, 2]),
           ((17, 4), [2, 6, 10, 14])]


@pytest.mark.parametrize('args,expected', INGEST)
def test_ingest_indices_are_unchanged(args, expected):
  n, fps, rate, most = args
  assert sampling.rate_indices(*args) == expected
  assert sampling.stored_indices(n, fps, 8, rate, most) == expected  # what ingest calls


@pytest.mark.parametrize('args,expected', UNIFORM)
def test_uniform_indices_are_unchanged(args, expected):
  assert sampling.uniform_indices(*args) == expected
  assert sampling.stored_indices(args[0], 25.0, args[1], 0.0, 0) == expected  # no rate


# (num_frames, fps, T, sample_fps, max_duration_s, K) → predict.view_indices before sharing.
VIEWS = [
    ((300, 25.0, 8, 8.0, 10.0, 4), [[53, 56, 59, 62, 65, 68, 71, 75],
                                    [109, 112, 115, 118, 121, 125, 128, 131],
                                    [165, 168, 171, 175, 178, 181, 184, 187],
                                    [221, 225, 228, 231, 234, 237, 240, 243]]),
    ((61, 29.97, 8, 8.0, 4.0, 3), [[4, 8, 11, 15, 19, 23, 26, 30], [15, 19, 23, 26, 30, 34, 37, 41],
                                   [23, 26, 30, 34, 37, 41, 45, 49]]),
    ((40, 10.0, 8, 8.0, 10.0, 4), [[3, 5, 6, 7, 8, 10, 11, 12], [11, 12, 13, 15, 16, 17, 18, 20],
                                   [18, 20, 21, 22, 23, 25, 26, 27],
                                   [26, 27, 28, 30, 31, 32, 33, 35]]),
    ((300, 25.0, 8, 0.0, 10.0, 2), [[18, 56, 93, 131, 168, 206, 243, 281]] * 2),
]


@pytest.mark.parametrize('args,expected', VIEWS)
def test_view_indices_are_unchanged(args, expected):
  n, fps, t, rate, duration, k = args
  clip = predict.ModelClipConfig(num_frames=t, sample_fps=rate, max_duration_s=duration,
                                 num_views=k)
  info = video_reader.VideoInfo(num_frames=n, fps=fps, width=64, height=64)
  assert predict.view_indices(info, clip) == expected


def test_timeline_windows_are_unchanged():
  plan = lambda *a: [(round(w.start_s, 4), w.indices) for w in timeline.plan_windows(*a)]
  assert plan(91, 29.97, 2, 1, 8, 8.0) == [(0.0, [0, 3, 7, 11, 14, 18, 22, 26]),
                                           (1.001, [30, 33, 37, 41, 44, 48, 52, 56]),
                                           (2.002, [60, 63, 67, 71, 74, 78, 82, 86])]
  assert plan(50, 24, 2, 0.7, 4, 3.0) == [(0.0, [0, 8, 16, 24]), (0.7083, [17, 25, 33, 41])]
  assert plan(100, 10, 2, 1, 4, 0.0)[1] == (1.0, [12, 17, 22, 27])


def test_graph_view_starts_agree_with_the_rule():
  counts = np.arange(0, 200)
  for t, k in [(8, 1), (8, 4), (16, 3), (32, 5)]:
    graph = clip_views.view_starts(tf.constant(counts, tf.int32), t, k).numpy()  # [B, K]
    assert graph.tolist() == [sampling.view_starts(int(c), t, k) for c in counts], (t, k)


def test_graph_training_clips_agree_with_the_rule():
  rng = np.random.default_rng(0)
  counts = rng.integers(1, 90, 64)
  strides = np.exp(rng.uniform(-np.log(sampling.MAX_SPEED), np.log(sampling.MAX_SPEED), 64))
  draws = rng.uniform(size=64)
  for t in (4, 8, 16):
    graph = clip_views.clip_index(tf.constant(counts, tf.int32), tf.constant(strides, tf.float32),
                                  tf.constant(draws, tf.float32), t).numpy()  # [B, T]
    assert graph.tolist() == [sampling.clip_offsets(int(c), t, s, d)
                              for c, s, d in zip(counts, strides, draws)], t


def test_stream_sampler_keeps_the_rate_of_the_rule():
  """A stream sampled at the model's rate keeps the frames the file rule takes at 1:1 rates."""
  sampler = sampling.StreamSampler(5.0)
  kept = [i for i in range(100) if sampler.keep(i / 25.0)]
  assert kept == [i * 5 for i in range(20)]
  assert kept == sampling.rate_indices(100, 25.0, 5.0, 20)


@pytest.mark.parametrize('t,rate,duration,slots', [(8, 8.0, 10.0, 80), (8, 8.0, 0.5, 8),
                                                   (16, 3.0, 2.5, 16), (8, 7.5, 10.0, 75),
                                                   (8, 0.0, 10.0, 8), (8, 2.9, 10.0, 29)])
def test_record_slots_are_unchanged(t, rate, duration, slots):
  clip = predict.ModelClipConfig(num_frames=t, sample_fps=rate, max_duration_s=duration)
  assert clip.stored_frames == sampling.stored_count(t, rate, duration) == slots


def test_one_positive_class_score_and_label_for_every_output_shape():
  binary = predict.ModelClipConfig(class_names=('NonViolence', 'Violence'))
  assert binary.positive_score([0.7]) == pytest.approx(0.7)  # one sigmoid output
  assert binary.positive_score([0.3, 0.7]) == pytest.approx(0.7)
  named = predict.ModelClipConfig(class_names=('calm', 'fight', 'riot'), positive_class='riot')
  assert named.positive_score([0.2, 0.5, 0.3]) == pytest.approx(0.3)  # not p[1]
  unnamed = predict.ModelClipConfig(class_names=('calm', 'fight', 'riot'))
  assert unnamed.positive_score([0.2, 0.5, 0.3]) == pytest.approx(0.8)  # 1 − P(first)
  rows = ([0.7], [0.3], [0.5], [0.2, 0.5, 0.3])
  assert [predict.predicted_label(r) for r in rows] == [1, 0, 0, 1]  # a tie: the first
  row = predict.Prediction('v.mp4')
  row.fill([0.2, 0.5, 0.3], named)
  assert (row.label, row.positive_class, row.positive_probability) == ('fight', 'riot',
                                                                       pytest.approx(0.3))
