"""Frame sampling, resizing and reading of real encoded videos."""
import numpy as np
import pytest

from vivit_tfx.data import sampling, synthetic, video_reader
from vivit_tfx.data.frames import resize_and_crop_array


@pytest.mark.parametrize('n,t,expected', [
    (3, 8, [0, 1, 2, 0, 1, 2, 0, 1]),        # short: loop padding
    (8, 8, list(range(8))),                  # exact: every frame
    (80, 8, [5, 15, 25, 35, 45, 55, 65, 75]),  # long: segment centres across the whole video
    (1, 4, [0, 0, 0, 0]),                    # a one-frame video
])
def test_sample_indices(n, t, expected):
  assert sampling.uniform_indices(n, t) == expected


def test_sample_indices_cover_the_whole_video():
  idx = sampling.uniform_indices(1000, 16)
  assert idx == sorted(idx) and len(set(idx)) == 16
  assert idx[0] < 1000 / 16 and idx[-1] > 1000 - 1000 / 16


def test_sample_indices_rejects_empty():
  with pytest.raises(ValueError):
    sampling.uniform_indices(0, 8)


@pytest.mark.parametrize('container', ['mp4', 'avi'])
def test_read_clip_samples_the_right_frames(tmp_path, container):
  # Each frame's brightness encodes its index, so we can see which frames were sampled.
  frames = np.stack([np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)])
  path = str(tmp_path / f'v.{container}')
  synthetic.write_video(path, frames, fps=10)
  clip = video_reader.read_clip(path, 4, (16, 16))
  assert clip.frames.shape == (4, 16, 16, 3) and clip.frames.dtype == np.uint8
  assert clip.info.num_frames == 20 and clip.info.width == 64 and clip.info.height == 48
  assert clip.indices == [2, 7, 12, 17]
  np.testing.assert_allclose(clip.frames.reshape(4, -1).mean(1), [20, 70, 120, 170], atol=6)


@pytest.mark.parametrize('container', ['mp4', 'avi'])
def test_read_clip_seeks_accurately_in_long_videos(tmp_path, container):
  # 400 frames whose brightness encodes the index; samples are ~50 frames apart (seeking).
  frames = np.stack([np.full((32, 32, 3), int(i * 0.6), np.uint8) for i in range(400)])
  path = str(tmp_path / f'long.{container}')
  synthetic.write_video(path, frames, fps=25)
  clip = video_reader.read_clip(path, 8, (16, 16))
  assert clip.indices == [25, 75, 125, 175, 225, 275, 325, 375]
  # The oracle: the same frames from decoding the whole file sequentially, without seeking ...
  sequential = dict(video_reader.iter_frames(path, clip.indices, (16, 16)))
  np.testing.assert_array_equal(clip.frames, np.stack([sequential[i] for i in clip.indices]))
  # ... and from OpenCV (which converts to RGB before resizing: ≤ 2 levels apart).
  every = video_reader.read_all_frames(path)
  expected = resize_and_crop_array(every[clip.indices], (16, 16))
  np.testing.assert_allclose(clip.frames.astype(int), expected.astype(int), atol=2)


def test_read_clip_loop_pads_short_video(tmp_path):
  frames = np.stack([np.full((32, 32, 3), 80 * i, np.uint8) for i in range(3)])
  path = str(tmp_path / 'short.mp4')
  synthetic.write_video(path, frames, fps=10)
  clip = video_reader.read_clip(path, 8, (32, 32))
  means = clip.frames.reshape(8, -1).mean(1)
  np.testing.assert_allclose(means, [0, 80, 160, 0, 80, 160, 0, 80], atol=6)


def test_read_clip_of_a_cut_off_recording_samples_the_frames_it_has(tmp_path):
  # A recording cut off mid-write: the AVI header still counts 40 frames, about 20 remain.
  # (Reproduced: the resampling after the over-count raised NameError, so ingest skipped a
  # readable video.)
  frames = np.stack([np.full((32, 32, 3), 6 * i, np.uint8) for i in range(40)])
  whole = tmp_path / 'whole.avi'
  synthetic.write_video(str(whole), frames, fps=10)
  cut = tmp_path / 'cut.avi'
  cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
  assert video_reader.probe(str(cut)).num_frames == 40  # the header's count
  clip = video_reader.read_clip(str(cut), 8, (16, 16))
  assert clip.frames.shape == (8, 16, 16, 3)
  assert clip.info.num_frames < 40 and max(clip.indices) < clip.info.num_frames
  assert clip.indices == sampling.uniform_indices(clip.info.num_frames, 8)
  np.testing.assert_allclose(clip.frames.reshape(8, -1).mean(1),
                             [6 * i for i in clip.indices], atol=6)


@pytest.mark.parametrize('content,reason', [
    (b'', 'empty file'),
    (b'plain text, not a video\n' * 10, 'not a readable video'),
])
def test_read_clip_bad_file_raises_reason(tmp_path, content, reason):
  path = tmp_path / 'bad.mp4'
  path.write_bytes(content)
  with pytest.raises(video_reader.VideoReadError, match=reason):
    video_reader.read_clip(str(path), 8, (32, 32))


def _distinct_frames(n: int, height: int = 72, width: int = 96) -> np.ndarray:
  """[n, H, W, 3] RGB: frame i has background level 20 + 7i mod 200 and a bar at x = 5i mod W,
  so neighbouring frames differ by ≥ 7 levels everywhere."""
  frames = np.empty((n, height, width, 3), np.uint8)
  for i in range(n):
    frames[i] = 20 + (7 * i) % 200
    frames[i, :, (5 * i) % (width - 12):(5 * i) % (width - 12) + 12] = (250, 40, 40)
  return frames


def _write(path: str, frames: np.ndarray, fps: float) -> None:
  if 'h264' in path:
    synthetic.write_h264(path, frames, fps, keyframe_every=25)
  else:
    synthetic.write_video(path, frames, fps)  # .mp4: mp4v, .avi: MJPG


def _assert_reference_frames(clip, reference: np.ndarray, size) -> None:
  """Each of the clip's frames is, of the reference frames around its index, closest to its own
  (≥ 7 levels from the neighbours) and within the two RGB conversions' rounding of it."""
  for frame, i in zip(clip.frames.astype(int), clip.indices):
    near = range(max(0, i - 2), min(len(reference), i + 3))
    error = {j: np.abs(frame - resize_and_crop_array(reference[j], size)).mean()
             for j in near}
    assert min(error, key=error.get) == i and error[i] < 4, (i, error)


@pytest.mark.parametrize('name', ['mp4v.mp4', 'h264.mp4', 'mjpg.avi'])
def test_reader_returns_the_reference_frames(tmp_path, name, monkeypatch):
  """PyAV's frames (seeking, scaled while converted) are OpenCV's sequentially decoded frames,
  resized after conversion: the same indices, pixels within the conversions' rounding."""
  path = str(tmp_path / name)
  _write(path, _distinct_frames(300), fps=25)
  reference = video_reader.read_all_frames(path)  # OpenCV: every frame, in order → [N, H, W, 3]
  assert video_reader.probe(path).num_frames == len(reference) == 300
  seeks = []
  seek = video_reader._Decoder._seek  # pylint: disable=protected-access
  monkeypatch.setattr(video_reader._Decoder, '_seek',  # pylint: disable=protected-access
                      lambda self, index: seeks.append(index) or seek(self, index))
  reads = [((8, (32, 32), 0.0, 0), sampling.uniform_indices(300, 8)),  # gaps 37: no seek
           ((4, (24, 40), 0.0, 0), sampling.uniform_indices(300, 4)),  # gaps 75: seeks
           ((8, (96, 96), 8.0, 64), sampling.rate_indices(300, 25.0, 8.0, 64)),  # upscales
           # the central 1.92 s of 12 s (every 3rd frame): the first kept frame (126) is reached
           # by seeking
           ((8, (32, 32), 8.0, 16), sampling.rate_indices(300, 25.0, 8.0, 16))]
  for (t, size, sample_fps, max_frames), indices in reads:
    clip = video_reader.read_clip(path, t, size, sample_fps, max_frames)
    assert clip.indices == indices and clip.frames.shape == (len(indices), *size, 3)
    _assert_reference_frames(clip, reference, size)
  assert seeks == [112, 187, 262, 54, 126], seeks


def test_reader_decodes_sequentially_where_timestamps_skip(tmp_path):
  """Variable frame rate (a hole in the timestamps): frame i is still the i-th frame decoded."""
  import av  # pylint: disable=g-import-not-at-top
  from fractions import Fraction  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / 'vfr.mp4')
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=25)
    stream.width, stream.height, stream.pix_fmt = 96, 72, 'yuv420p'
    stream.codec_context.gop_size = 20
    for i, rgb in enumerate(_distinct_frames(300)):
      frame = av.VideoFrame.from_ndarray(rgb, format='rgb24')
      frame.pts, frame.time_base = i + 10 * (i > 100), Fraction(1, 25)  # 0.4 s gap after 100
      container.mux(stream.encode(frame))
    container.mux(stream.encode())
  clip = video_reader.read_clip(path, 4, (48, 64))
  assert clip.indices == [37, 112, 187, 262]
  _assert_reference_frames(clip, video_reader.read_all_frames(path), (48, 64))


def test_frame_stream_converts_as_ingestion_does(tmp_path):
  """`watch`'s frames (FrameStream: every frame decoded, a kept one converted at its small
  size) are exactly ingestion's frames of the same indices; `snapshot` is the whole frame,
  converted when called (after the stream has moved on)."""
  path = str(tmp_path / 'h264.mp4')
  _write(path, _distinct_frames(60), fps=25)
  kept = [0, 7, 31, 59]
  ingested = dict(video_reader.iter_frames(path, kept, (32, 32)))
  stream = video_reader.FrameStream.open_file(path)
  assert stream.fps == 25.0
  index, watched, whole = 0, {}, {}
  while stream.grab():
    if index in kept:
      watched[index] = stream.rgb((32, 32))
      whole[index] = stream.snapshot()
    index += 1
  stream.release()
  assert index == 60 and whole[59]().shape == (72, 96, 3)
  # Each snapshot is its own frame, though converted after the decoder moved on.
  firsts = [whole[i]()[0, 0].tolist() for i in kept]
  assert len({tuple(f) for f in firsts}) == len(kept), firsts
  for i in kept:
    np.testing.assert_array_equal(watched[i], ingested[i])
