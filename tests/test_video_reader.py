"""Frame sampling, resizing and reading of real encoded videos."""
import numpy as np
import pytest

from vivit_tfx.components import synthetic, video_reader


@pytest.mark.parametrize('n,t,expected', [
    (3, 8, [0, 1, 2, 0, 1, 2, 0, 1]),        # short: loop padding
    (8, 8, list(range(8))),                  # exact: every frame
    (80, 8, [5, 15, 25, 35, 45, 55, 65, 75]),  # long: segment centres across the whole video
    (1, 4, [0, 0, 0, 0]),                    # a one-frame video
])
def test_sample_indices(n, t, expected):
  assert video_reader.sample_indices(n, t) == expected


def test_sample_indices_cover_the_whole_video():
  idx = video_reader.sample_indices(1000, 16)
  assert idx == sorted(idx) and len(set(idx)) == 16
  assert idx[0] < 1000 / 16 and idx[-1] > 1000 - 1000 / 16


def test_sample_indices_rejects_empty():
  with pytest.raises(ValueError):
    video_reader.sample_indices(0, 8)


def test_resize_and_crop_keeps_aspect_and_centre():
  frame = np.zeros((100, 200, 3), np.uint8)
  frame[:, 90:110] = 255  # a vertical bar in the centre
  out = video_reader.resize_and_crop(frame, (50, 50))
  assert out.shape == (50, 50, 3)
  # Aspect kept: the bar stays 10 px wide (scale 0.5) and centred; no horizontal squash.
  bright = np.where(out[25, :, 0] > 127)[0]
  assert 8 <= len(bright) <= 12 and abs(bright.mean() - 24.5) < 2


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
  # The oracle: the same frames from decoding the whole file sequentially.
  every = video_reader.read_all_frames(path)
  expected = np.stack([video_reader.resize_and_crop(every[i], (16, 16)) for i in clip.indices])
  np.testing.assert_allclose(clip.frames.astype(int), expected.astype(int), atol=1)


def test_read_clip_loop_pads_short_video(tmp_path):
  frames = np.stack([np.full((32, 32, 3), 80 * i, np.uint8) for i in range(3)])
  path = str(tmp_path / 'short.mp4')
  synthetic.write_video(path, frames, fps=10)
  clip = video_reader.read_clip(path, 8, (32, 32))
  means = clip.frames.reshape(8, -1).mean(1)
  np.testing.assert_allclose(means, [0, 80, 160, 0, 80, 160, 0, 80], atol=6)


@pytest.mark.parametrize('content,reason', [
    (b'', 'empty file'),
    (b'plain text, not a video\n' * 10, 'not a readable video'),
])
def test_read_clip_bad_file_raises_reason(tmp_path, content, reason):
  path = tmp_path / 'bad.mp4'
  path.write_bytes(content)
  with pytest.raises(video_reader.VideoReadError, match=reason):
    video_reader.read_clip(str(path), 8, (32, 32))
