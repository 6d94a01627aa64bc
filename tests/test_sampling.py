"""The one sampling rule (`data.sampling`): its indices (literals), even steps in source
frames at every source rate, and the graph's agreement."""
import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import sampling, video_reader
from vivit_tfx.inference import predict, timeline
from vivit_tfx.models.trainer import clip_views

# (num_frames, fps, sample_fps, max_frames) → the indices ingestion stores: every
# frame_stride-th source frame (the rule before issue 28 took the frame on screen every
# 1/sample_fps s: 25 fps at 8 gave steps 3, 3, 3, 3, 3, 3, 3, 4).
INGEST = [
    ((27, 10.0, 4.0, 12), [0, 3, 6, 9, 12, 15, 18, 21, 24]),  # stride 3 (3.3 fps, not 5): 9 frames
    ((300, 25.0, 8.0, 16), list(range(126, 172, 3))),  # 8.3 fps: 16 frames, 1.92 s
    ((1800, 30.0, 4.0, 40), list(range(752, 1041, 8))),  # 3.75 fps: 37 frames, 9.87 s
    ((61, 29.97, 8.0, 32), list(range(0, 57, 4))),  # the whole video
    ((45, 0.0, 8.0, 16), list(range(0, 43, 3))),  # unknown rate: 25 fps
    ((3, 30.0, 8.0, 16), [0]),  # shorter than one stride
    ((250, 24.0, 5.0, 20), list(range(77, 168, 5))),  # 4.8 fps: 19 frames, 3.96 s
    ((100, 7.5, 3.0, 64), list(range(0, 97, 3))),
]
UNIFORM = [((300, 8), [18, 56, 93, 131, 168, 206, 243, 281]), ((5, 8), [0, 1, 2, 3, 4, 0, 1, 2]),
           ((17, 4), [2, 6, 10, 14])]


@pytest.mark.parametrize('args,expected', INGEST)
def test_ingest_indices(args, expected):
  n, fps, rate, most = args
  assert sampling.rate_indices(*args) == expected
  assert sampling.stored_indices(n, fps, 8, rate, most) == expected  # what ingest calls


@pytest.mark.parametrize('args,expected', UNIFORM)
def test_uniform_indices_are_unchanged(args, expected):
  assert sampling.uniform_indices(*args) == expected
  assert sampling.stored_indices(args[0], 25.0, args[1], 0.0, 0) == expected  # no rate


# (num_frames, fps, T, sample_fps, max_duration_s, K) → predict.view_indices.
VIEWS = [
    ((300, 25.0, 8, 8.0, 10.0, 4), [list(range(s, s + 22, 3)) for s in (57, 111, 165, 219)]),
    ((61, 29.97, 8, 8.0, 4.0, 3), [list(range(s, s + 29, 4)) for s in (4, 12, 20)]),
    ((40, 10.0, 8, 8.0, 10.0, 4), [list(range(s, s + 8)) for s in (4, 12, 20, 28)]),
    ((300, 25.0, 8, 0.0, 10.0, 2), [[18, 56, 93, 131, 168, 206, 243, 281]] * 2),
]


@pytest.mark.parametrize('args,expected', VIEWS)
def test_view_indices(args, expected):
  n, fps, t, rate, duration, k = args
  clip = predict.ModelClipConfig(num_frames=t, sample_fps=rate, max_duration_s=duration,
                                 num_views=k)
  info = video_reader.VideoInfo(num_frames=n, fps=fps, width=64, height=64)
  assert predict.view_indices(info, clip) == expected


def test_timeline_windows():
  plan = lambda *a: [(round(w.start_s, 4), w.indices) for w in timeline.plan_windows(*a)]
  # A window is T x stride source frames (32 at 29.97 fps): a third one would end past frame 91.
  assert plan(91, 29.97, 2, 1, 8, 8.0) == [(0.0, list(range(0, 29, 4))),
                                           (1.001, list(range(30, 59, 4)))]
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


def test_stream_sampler_keeps_the_frames_of_the_rule():
  """A stream sampled at the model's rate keeps the frames the file rule takes."""
  sampler = sampling.StreamSampler(5.0, 25.0)
  kept = [i for i in range(100) if sampler.keep(i / 25.0)]
  assert kept == [i * 5 for i in range(20)]
  assert kept == sampling.rate_indices(100, 25.0, 5.0, 20)


# source fps → (stride at 8 fps, frames of a 10 s record of N = 80 slots)
EVEN = {10.0: (1, 80), 12.0: (2, 60), 15.0: (2, 75), 25.0: (3, 80), 30.0: (4, 75)}


@pytest.mark.parametrize('fps', sorted(EVEN))
def test_steps_are_even_in_source_frames(fps):
  """Ingest, the timeline and watch step by the same number of source frames at every sample
  (the frame on screen every 1/8 s stepped 1,1,1,2 / 1,2 / 1,2,2,2 / 3,…,4 / 3,4,4,4 at 10, 12,
  15, 25, 30 fps: fake acceleration)."""
  n = int(20 * fps)  # a 20 s video
  stored = sampling.rate_indices(n, fps, 8.0, 80)
  window = sampling.frames_at_rate(3.3, 16, fps, 8.0, n)
  sampler = sampling.StreamSampler(8.0, fps)
  streamed = [i for i in range(n) if sampler.keep(i / fps)]
  for kept in (stored, window, streamed):
    assert np.unique(np.diff(kept)).tolist() == [EVEN[fps][0]], (fps, kept)
  assert streamed == list(range(0, n, EVEN[fps][0]))
  assert sampling.effective_fps(fps, 8.0) == sampler.fps == fps / EVEN[fps][0]


@pytest.mark.parametrize('fps', sorted(EVEN))
def test_a_record_covers_max_duration_s_or_fills_its_slots(fps):
  stride, count = EVEN[fps]
  stored = sampling.rate_indices(int(60 * fps), fps, 8.0, 80)  # a 60 s video, 10 s records
  assert len(stored) == count and count * stride / fps <= 10.0  # 8 s at 10 fps: 80 slots full
  assert stored[0] == (int(60 * fps) - count * stride) // 2  # centred


def test_stream_sampler_on_irregular_timestamps():
  """Jitter under a quarter of a source frame keeps every stride-th frame; a gap restarts the
  schedule; a source faster than it reports still gives the effective rate in stream time."""
  rng = np.random.default_rng(0)
  times = (np.arange(240) + rng.uniform(-0.24, 0.24, 240)) / 12.0  # 12 fps, jittery
  sampler = sampling.StreamSampler(8.0, 12.0)
  assert [i for i, t in enumerate(times) if sampler.keep(t)] == list(range(0, 240, 2))
  sampler = sampling.StreamSampler(8.0, 12.0)
  times = [i / 12.0 for i in range(24)] + [3.05 + i / 12.0 for i in range(24)]  # 1 s lost
  kept = [t for t in times if sampler.keep(t)]
  assert kept[12] == 3.05 and np.allclose(np.diff(kept[12:]), 1 / 6)
  sampler = sampling.StreamSampler(8.0, 12.0)  # reports 12 fps, delivers 24
  kept = [t for t in np.arange(480) / 24.0 if sampler.keep(t)]
  assert len(kept) == 120 and np.allclose(np.diff(kept), 1 / 6, atol=1 / 24)


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
