"""`vivit-tfx bench watch --streams 1,2,4,…`: how many cameras one `watch` process holds.

Every stream is a 720p H.264 file read at its frame rate (`watch --realtime`, as a camera
delivers it) with the hard synthetic set's detail (a handheld camera, moving clutter, light
changes, JPEG noise; calm and violent segments of 5 s). For each N, N cameras are watched in
one process (one decoder thread each, windows scored in batches) and, apart, the same N
streams are only decoded (the decode floor). Printed per N: frames decoded per second, windows
scored per second, lag from a window's last frame being due to its score (p50 of the median
camera, p95 of the worst), CPU (% of one core) and memory per camera, and whether every stream
kept real time (its lag p95 under `--stride-s`; the decode floor: each stream's frames decoded
within 0.5 s of being due, p95).
"""
from __future__ import annotations

import dataclasses
import io
import os
import resource
import tempfile
import threading
import time
from typing import Callable, Dict, List, Tuple

import cv2
import numpy as np

from vivit_tfx.data import synthetic
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.inference import watch
from vivit_tfx.models.network.vivit_config import ViViTConfig

SEGMENT_S = 5.0


def camera_video(path: str, seconds: float, fps: float, size, seed: int = 0) -> str:
  """Writes `seconds` of H.264 at `size` (W, H) and `fps`: hard-set scenes, calm and violent
  segments in turn, with a camera's texture and sensor noise on top (the hard set's flat
  shapes alone compress to a few hundred kbit/s at 720p; a camera's stream carries more);
  rendered and encoded a few frames at a time (bounded memory)."""
  per_segment = int(round(SEGMENT_S * fps))
  segments = int(np.ceil(seconds / SEGMENT_S))
  rng = np.random.default_rng(seed)
  w, h = size
  texture = cv2.resize(rng.normal(0, 14, (h // 8, w // 8, 3)).astype(np.float32), (w, h))
  texture += rng.normal(0, 6, (h, w, 3)).astype(np.float32)  # fixed detail: surfaces, grain
  noise = rng.normal(0, 3, (16, h, w, 3)).astype(np.float32)  # sensor noise, 16 draws in turn

  def frames():  # [H, W, 3] uint8 RGB, one at a time
    k = 0
    for i in range(segments):
      spec = synthetic.ClipSpec(index=i, label=i % 2, width=w, height=h, fps=fps,
                                num_frames=per_segment, container='mp4',
                                seed=int(rng.integers(2**31)), difficulty='hard', speed=0.45)
      for start in range(0, per_segment, 25):
        for frame in synthetic.render(spec, range(start, min(start + 25, per_segment))):
          yield np.clip(frame + texture + noise[k % len(noise)], 0, 255).astype(np.uint8)
          k += 1

  synthetic.write_h264(path, frames(), fps)
  return path


def export_untrained(config: ViViTConfig, folder: str, sample_fps: float, seed: int = 0) -> str:
  """An untrained ViViT of `config` exported as a pushed model (random weights everywhere:
  the head starts at zero, so scores would all be 0.5): speed measures and tests only."""
  # local: models/ loads TensorFlow and Keras.
  from vivit_tfx.bench.export_size import DecodeOnlyTransform  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import export  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.checkpoints.initialise import initialised_vivit  # pylint: disable=g-import-not-at-top
  model = initialised_vivit(config)
  rng = np.random.default_rng(seed)
  model.set_weights([rng.normal(0, 0.3, w.shape) for w in model.get_weights()])
  clip = ModelClipConfig(num_frames=config.num_frames, frame_size=tuple(config.image_size),
                         sample_fps=sample_fps)
  export.export(model, config, DecodeOnlyTransform(config.num_frames, config.image_size), folder,
                clip)
  return folder


class Usage:
  """CPU seconds of this process and its peak resident memory (sampled) while in use."""

  def __init__(self, every_s: float = 0.1):
    self.every_s, self.peak, self._stop = every_s, 0, threading.Event()
    self.base = self.peak = self._rss()

  @staticmethod
  def _rss() -> int:
    with open('/proc/self/statm') as f:
      return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

  @staticmethod
  def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

  def __enter__(self) -> 'Usage':
    self.cpu0, self.wall0 = self._cpu(), time.monotonic()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self) -> None:
    while not self._stop.wait(self.every_s):
      self.peak = max(self.peak, self._rss())

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()
    self.cpu_s, self.wall_s = self._cpu() - self.cpu0, time.monotonic() - self.wall0


@dataclasses.dataclass
class Row:
  streams: int
  frames_per_s: float
  windows_per_s: float
  lag_p50_s: float
  lag_p95_s: float
  cpu_per_camera: float  # % of one core
  mib_per_camera: float  # peak resident memory above the start, per camera
  real_time: bool
  mean_batch: float = 0.0


def _row(n: int, usage: Usage, frames: int, windows: int, lags: List[float], real_time: bool,
         mean_batch: float = 0.0) -> Row:
  lags = np.array(lags or [np.nan])
  return Row(n, frames / usage.wall_s, windows / usage.wall_s, float(np.percentile(lags, 50)),
             float(np.percentile(lags, 95)), 100 * usage.cpu_s / usage.wall_s / n,
             (usage.peak - usage.base) / 2**20 / n, real_time, mean_batch)


def decode_floor(video: str, n: int, realtime: bool = True, max_frames: int = 0) -> Row:
  """N threads that only decode the stream (`watch.Source.grab`, what `watch` decodes every
  frame with); lag: how late each frame was decoded after it was due."""
  lags: List[List[float]] = [[] for _ in range(n)]
  counts = [0] * n

  def run(k: int) -> None:
    source = watch.Source(video, realtime=realtime)
    while not max_frames or counts[k] < max_frames:
      ok, _, _ = source.grab()
      if not ok:
        break
      counts[k] += 1
      lags[k].append(time.monotonic() - source.due)
    source.release()

  with Usage() as usage:
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  late = [np.percentile(l, 95) if l else np.inf for l in lags]  # p95 per stream
  return _row(n, usage, sum(counts), 0, [x for l in lags for x in l], max(late) < 0.5)


def watch_streams(video: str, n: int, model_dir: str, stride_s: float, out_dir: str,
                  scorer: watch.Scorer) -> Row:
  """`watch` on N cameras playing `video` at its frame rate, in this process."""
  config = watch.WatchConfig(
      source=video, model_dir=model_dir, out_dir=out_dir, stride_s=stride_s, realtime=True,
      cameras=tuple(watch.Camera(f'cam{k + 1}', video) for k in range(n)))
  with Usage() as usage:
    summary = watch.watch(config, stdout=io.StringIO(), log=lambda m: None, scorer=scorer)
  cameras = summary['per_camera']
  worst = max(c['latency_p95_s'] for c in cameras)
  row = _row(n, usage, summary['frames_read'], summary['windows_scored'], [], worst < stride_s,
             summary['mean_batch'])
  # Lag: the median camera's p50 and the worst camera's p95 (their summaries hold those).
  row.lag_p50_s, row.lag_p95_s = float(np.median([c['latency_p50_s'] for c in cameras])), worst
  return row


def table(rows: List[Row], floors: Dict[int, Row]) -> str:
  lines = ['| streams | frames decoded/s | windows scored/s | mean batch | lag p50 (ms) | '
           'lag p95 (ms) | CPU/camera (% core) | MiB/camera | real time | decode floor: '
           'CPU/camera (% core) | decode floor: real time |', '|' + '---:|' * 11]
  for r in rows:
    f = floors.get(r.streams)
    lines.append(
        f'| {r.streams} | {r.frames_per_s:.0f} | {r.windows_per_s:.1f} | {r.mean_batch:.2f} | '
        f'{1000 * r.lag_p50_s:.0f} | {1000 * r.lag_p95_s:.0f} | {r.cpu_per_camera:.0f} | '
        f'{r.mib_per_camera:.0f} | {"yes" if r.real_time else "no"} | '
        + (f'{f.cpu_per_camera:.0f} | {"yes" if f.real_time else "no"} |' if f else '– | – |'))
  return '\n'.join(lines)


def run(streams: List[int], model_dir: str, video: str, stride_s: float,
        say: Callable[[str], None] = print) -> Tuple[List[Row], Dict[int, Row]]:
  """The table's rows, largest N last; `say` gets each row's line as it is measured."""
  num_frames, size, _, _ = watch.sampling_rule(model_dir)
  scorer = watch.Scorer(model_dir, (num_frames,) + size, max_batch=max(streams))
  rows, floors = [], {}
  with tempfile.TemporaryDirectory() as tmp:
    for n in streams:
      floors[n] = decode_floor(video, n)
      rows.append(watch_streams(video, n, model_dir, stride_s, os.path.join(tmp, str(n)),
                                scorer))
      say(table(rows[-1:], floors).splitlines()[-1])
  return rows, floors
