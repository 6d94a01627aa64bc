"""The embedded default dataset: a seeded generator of real encoded videos in the RLVS layout.

Both classes use the same actors (discs from one palette), the same backgrounds and the same
placement of a pair of actors; only the motion differs, so a single frame carries (almost) no
label information:
* NonViolence: slow, smooth drift with a gentle sway.
* Violence: the pair repeatedly rushes together and collides (fast oscillation along the line
  between them) with erratic per-frame jitter.
Resolution, fps, duration (some clips shorter than the sampled clip length) and container
(.mp4 / .avi) vary per clip.
"""
from __future__ import annotations

import dataclasses
import multiprocessing
import os
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from vivit_tfx.models.features import CLASS_NAMES

PALETTE = np.array([[220, 60, 60], [60, 200, 80], [70, 110, 230], [240, 200, 50],
                    [200, 80, 220], [60, 210, 220], [240, 140, 40], [235, 235, 235]], np.uint8)
BACKGROUNDS = np.array([[30, 30, 40], [90, 90, 80], [40, 70, 50], [70, 50, 40], [20, 40, 80],
                        [110, 100, 120]], np.uint8)
FOURCC = {'mp4': 'mp4v', 'avi': 'MJPG'}
FILE_PREFIX = {'Violence': 'V', 'NonViolence': 'NV'}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """What the generator varies, and over which ranges."""
  num_clips: int = 200
  seed: int = 0
  sizes: Tuple[Tuple[int, int], ...] = ((160, 120), (176, 144), (128, 96), (120, 160),
                                        (192, 108))  # (W, H)
  fps_choices: Tuple[float, ...] = (10.0, 12.0, 15.0, 20.0, 25.0)
  duration_s: Tuple[float, float] = (0.4, 3.0)
  containers: Tuple[str, ...] = ('mp4', 'avi')


@dataclasses.dataclass(frozen=True)
class ClipSpec:
  """Everything needed to render one clip deterministically."""
  index: int
  label: int
  width: int
  height: int
  fps: float
  num_frames: int
  container: str
  seed: int

  @property
  def relative_path(self) -> str:
    cls = CLASS_NAMES[self.label]
    return os.path.join(cls, f'{FILE_PREFIX[cls]}_{self.index:04d}.{self.container}')


def plan(config: SyntheticConfig) -> List[ClipSpec]:
  """Deterministic list of clip specs: balanced labels, varied size, fps, length, container."""
  specs = []
  for i in range(config.num_clips):
    rng = np.random.default_rng([config.seed, i])
    width, height = config.sizes[rng.integers(len(config.sizes))]
    fps = float(config.fps_choices[rng.integers(len(config.fps_choices))])
    duration = rng.uniform(*config.duration_s)
    specs.append(ClipSpec(index=i, label=i % 2, width=int(width), height=int(height), fps=fps,
                          num_frames=max(2, int(round(duration * fps))),
                          container=config.containers[(i // 2) % len(config.containers)],
                          seed=int(rng.integers(2**31))))
  return specs


def actor_tracks(spec: ClipSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Actor centres per frame in pixels, radii and colours.

  Returns (centres [F, A, 2] as (x, y), radii [A], colours [A, 3]).
  """
  rng = np.random.default_rng(spec.seed)
  side = min(spec.width, spec.height)
  num_actors = int(rng.integers(2, 4))
  radii = rng.uniform(0.08, 0.13, num_actors) * side
  colours = PALETTE[rng.choice(len(PALETTE), num_actors, replace=False)]
  t = np.arange(spec.num_frames) / spec.fps  # [F] seconds
  # The pair (actors 0 and 1) stands close together in both classes; others anywhere.
  centre = rng.uniform(0.3, 0.7, 2)
  angle = rng.uniform(0, 2 * np.pi)
  axis = np.array([np.cos(angle), np.sin(angle)])
  gap = rng.uniform(0.18, 0.3)
  starts = np.stack([centre - axis * gap / 2, centre + axis * gap / 2] +
                    [rng.uniform(0.2, 0.8, 2) for _ in range(num_actors - 2)])  # [A, 2]
  drift_dir = rng.uniform(0, 2 * np.pi, num_actors)
  drift = rng.uniform(0.02, 0.06, num_actors)[:, None] * np.stack(
      [np.cos(drift_dir), np.sin(drift_dir)], -1)  # [A, 2] units/s
  sway_phase = rng.uniform(0, 2 * np.pi, num_actors)
  pos = starts[None] + t[:, None, None] * drift[None]  # [F, A, 2]
  pos = pos + 0.015 * np.sin(2 * np.pi * 0.3 * t[:, None, None] + sway_phase[None, :, None])
  if spec.label == 1:
    # Collisions: the pair swings towards each other at 2–4 Hz, plus erratic jitter.
    freq = rng.uniform(2.0, 4.0)
    swing = 0.5 * gap * (0.5 + 0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3)))
    pos[:, 0] += axis * swing[:, None]
    pos[:, 1] -= axis * swing[:, None]
    pos += rng.normal(0, 0.035, pos.shape)
  pos = np.clip(pos, 0.05, 0.95)
  return pos * np.array([spec.width, spec.height]), radii, colours


def render(spec: ClipSpec) -> np.ndarray:
  """Frames of one clip, [F, H, W, 3] uint8 RGB."""
  rng = np.random.default_rng(spec.seed + 1)
  background = np.empty((spec.height, spec.width, 3), np.uint8)
  background[:] = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  for _ in range(5):  # static scenery, the same kind in both classes
    x0, y0 = rng.integers(0, spec.width), rng.integers(0, spec.height)
    w, h = rng.integers(8, spec.width // 3), rng.integers(8, spec.height // 3)
    shade = BACKGROUNDS[rng.integers(len(BACKGROUNDS))].astype(int) + 25
    cv2.rectangle(background, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)),
                  tuple(int(c) for c in np.clip(shade, 0, 255)), -1)
  centres, radii, colours = actor_tracks(spec)
  frames = np.empty((spec.num_frames, spec.height, spec.width, 3), np.uint8)
  for f in range(spec.num_frames):
    frame = background.copy()
    for (x, y), r, c in zip(centres[f], radii, colours):
      cv2.circle(frame, (int(x), int(y)), int(r), tuple(int(v) for v in c), -1, cv2.LINE_AA)
    frames[f] = frame
  return frames


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
  """Encodes RGB frames to `path`; the codec follows the extension (.mp4 → mp4v, .avi → MJPG)."""
  container = os.path.splitext(path)[1].lstrip('.').lower()
  height, width = frames.shape[1:3]
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC[container]), fps,
                           (width, height))
  if not writer.isOpened():
    raise RuntimeError(f'{path}: OpenCV cannot write .{container} video here')
  for frame in frames:
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  writer.release()


def _write_one(args: Tuple[str, ClipSpec]) -> str:
  root, spec = args
  path = os.path.join(root, spec.relative_path)
  write_video(path, render(spec), spec.fps)
  return path


def generate(root: str, config: SyntheticConfig = SyntheticConfig(), workers: int = 0,
             progress: bool = True) -> List[str]:
  """Writes the dataset under `root` (RLVS layout) and returns the written paths."""
  specs = plan(config)
  for cls in CLASS_NAMES:
    os.makedirs(os.path.join(root, cls), exist_ok=True)
  jobs = [(root, s) for s in specs]
  workers = workers or os.cpu_count() or 1
  with multiprocessing.get_context('spawn').Pool(workers) as pool:
    it = pool.imap(_write_one, jobs, chunksize=4)
    return list(tqdm(it, total=len(jobs), desc='make-synthetic', disable=not progress,
                     unit='clip'))


def add_bad_inputs(root: str) -> Dict[str, str]:
  """Adds hostile inputs next to a dataset (for demos and tests); returns path → what it is."""
  bad = {}
  violence = os.path.join(root, CLASS_NAMES[1])
  os.makedirs(violence, exist_ok=True)
  good = sorted(p for p in os.listdir(violence) if p.endswith('.mp4'))

  def _add(rel, content, what):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
      f.write(content)
    bad[path] = what

  _add(os.path.join(CLASS_NAMES[1], 'zero_bytes.mp4'), b'', 'zero-byte file')
  _add(os.path.join(CLASS_NAMES[0], 'not_a_video.mp4'), b'this is text, not video\n' * 20,
       'text named .mp4')
  _add(os.path.join(CLASS_NAMES[0], 'notes.txt'), b'hello', 'unsupported extension')
  _add(os.path.join('Unsorted', 'mystery.mp4'), b'\x00' * 64, 'unknown class folder')
  if good:
    with open(os.path.join(violence, good[0]), 'rb') as f:
      head = f.read(2048)
    _add(os.path.join(CLASS_NAMES[1], 'truncated.mp4'), head, 'truncated mp4')
  return bad


def long_video(path: str, segments: Sequence[int], segment_s: float = 4.0, fps: float = 15.0,
               size: Tuple[int, int] = (160, 120), seed: int = 0) -> List[Dict[str, float]]:
  """One video of consecutive segments (label per segment) with known boundaries.

  Every segment is a fresh scene of the same size and fps; returns the ground truth
  [{'start_s', 'end_s', 'label'}] and writes it next to the video as <path>.segments.json.
  """
  import json  # pylint: disable=g-import-not-at-top
  frames, truth = [], []
  per_segment = int(round(segment_s * fps))
  for i, label in enumerate(segments):
    rng = np.random.default_rng([seed, i])
    spec = ClipSpec(index=i, label=int(label), width=size[0], height=size[1], fps=fps,
                    num_frames=per_segment, container='mp4', seed=int(rng.integers(2**31)))
    frames.append(render(spec))
    truth.append({'start_s': i * segment_s, 'end_s': (i + 1) * segment_s, 'label': int(label)})
  write_video(path, np.concatenate(frames), fps)
  with open(path + '.segments.json', 'w') as f:
    json.dump(truth, f, indent=1)
  return truth


def actor_masks(spec: ClipSpec, indices: Sequence[int], size: Tuple[int, int]) -> np.ndarray:
  """Where the actors are in sampled frames after ingestion's resize + centre crop.

  Returns [len(indices), H, W] bool for the output `size` (H, W).
  """
  from vivit_tfx.components import video_reader  # pylint: disable=g-import-not-at-top
  centres, radii, _ = actor_tracks(spec)
  masks = []
  for i in indices:
    canvas = np.zeros((spec.height, spec.width, 3), np.uint8)
    for (x, y), r in zip(centres[i], radii):
      cv2.circle(canvas, (int(x), int(y)), int(r), (255, 255, 255), -1)
    masks.append(video_reader.resize_and_crop(canvas, size)[..., 0] > 127)
  return np.stack(masks)


def motion_energy(frames: np.ndarray) -> float:
  """Mean absolute difference between consecutive frames, [T, H, W, C] → scalar."""
  x = frames.astype(np.float32)
  return float(np.abs(np.diff(x, axis=0)).mean())


def pixel_statistics(frame: np.ndarray) -> np.ndarray:
  """Per-channel mean and std of one frame, [H, W, 3] → [6] (a single-frame feature)."""
  x = frame.reshape(-1, 3).astype(np.float32)
  return np.concatenate([x.mean(0), x.std(0)])


def labels_from_paths(paths: Sequence[str]) -> List[int]:
  """Label of each generated path, from its class folder."""
  return [CLASS_NAMES.index(os.path.basename(os.path.dirname(p))) for p in paths]
