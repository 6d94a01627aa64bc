"""The embedded default dataset: a seeded generator of real encoded videos in the RLVS layout.

Both classes use the same actors (discs from one palette), the same backgrounds and the same
placement of a pair of actors; only the motion differs, so a single frame carries (almost) no
label information:
* NonViolence: slow, smooth drift with a gentle sway.
* Violence: the pair repeatedly rushes together and collides (fast oscillation along the line
  between them) with erratic per-frame jitter.
Resolution, fps, duration (some clips shorter than the sampled clip length) and container
(.mp4 / .avi) vary per clip.

`difficulty='hard'` (`hard_config`): 2–30 s videos with a handheld camera, moving clutter,
lighting changes and compression noise; non-violent clips hold smooth periodic motion (pairs
dancing face to face or round each other, juggling) and violent clips impulsive motion
(strikes, knock-backs, collisions), both with the pair's relative speed drawn from one
distribution (shared by clips 2k and 2k + 1), so that neither one frame nor the amount of motion
decides the label: only its kind does.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
import json
import multiprocessing
import os
from typing import Dict, Iterable, List, Sequence, Tuple

import av
import cv2
import numpy as np
from tqdm import tqdm

from vivit_tfx.data.features import CLASS_NAMES
from vivit_tfx.data.frames import resize_and_crop_array

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
  difficulty: str = 'default'  # 'default' | 'hard'
  # hard: the pair's relative speed in short sides per second, measured every 1/8 s (×8 = px
  # per frame at 64 px and 8 fps); one draw per pair of clips (one of each class)
  pair_speed: Tuple[float, float] = (0.3, 0.6)


DIFFICULTIES = ('default', 'hard')


def hard_config(num_clips: int = 200, seed: int = 0) -> SyntheticConfig:
  """The hard benchmark: 2–30 s videos, fast non-violent motion, shake, clutter, light, noise."""
  return SyntheticConfig(num_clips=num_clips, seed=seed, duration_s=(2.0, 30.0),
                         fps_choices=(10.0, 12.0, 15.0), difficulty='hard')


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
  difficulty: str = 'default'
  speed: float = 0.0  # hard: the pair's relative speed (SyntheticConfig.pair_speed)

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
                          seed=int(rng.integers(2**31)), difficulty=config.difficulty,
                          speed=_pair_speed(config, i)))
  return specs


def _pair_speed(config: SyntheticConfig, index: int) -> float:
  """The hard set's relative speed of clip `index`: one draw for clips 2k and 2k + 1 (one of
  each class), so both classes hold the same speeds; 0 for the default set."""
  if config.difficulty != 'hard':
    return 0.0
  return float(np.random.default_rng([config.seed, index // 2, 1]).uniform(*config.pair_speed))


def actor_tracks(spec: ClipSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Actor centres per frame in pixels, radii and colours.

  Returns (centres [F, A, 2] as (x, y), radii [A], colours [A, 3]).
  """
  if spec.difficulty == 'hard':
    return _hard_tracks(spec)
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


def _bounce(x: np.ndarray) -> np.ndarray:
  """Positions reflected into [0.1, 0.9] (a path that bounces off the walls)."""
  y = np.mod(x - 0.1, 1.6)
  return 0.1 + np.where(y > 0.8, 1.6 - y, y)


def _hard_tracks(spec: ClipSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Hard set: fast non-violent motion (label 0) or strikes and collisions (label 1).

  Both classes move their pair at the same mean speed (0.35–0.8 units/s) and keep it within
  reach of each other; what differs is the kind of motion: smooth and periodic (running side by
  side, juggling, dancing round each other) against impulsive (lunges that end in contact, a
  knock-back, sudden stops).
  """
  rng = np.random.default_rng(spec.seed)
  side = min(spec.width, spec.height)
  num_actors = int(rng.integers(2, 5))
  radii = rng.uniform(0.07, 0.12, num_actors) * side
  colours = PALETTE[rng.choice(len(PALETTE), num_actors, replace=False)]
  t = np.arange(spec.num_frames) / spec.fps  # [F]
  speed = rng.uniform(0.35, 0.8)  # units/s, both classes
  centre = rng.uniform(0.35, 0.65, 2)
  angle = rng.uniform(0, 2 * np.pi)
  axis = np.array([np.cos(angle), np.sin(angle)])
  normal = np.array([-axis[1], axis[0]])
  gap = rng.uniform(0.15, 0.25)
  pos = np.empty((spec.num_frames, num_actors, 2))
  if spec.label == 0:
    kind = rng.integers(3)
    if kind == 0:  # running: the pair runs side by side, bouncing off the walls
      heading = rng.uniform(0, 2 * np.pi)
      path = centre[None] + speed * t[:, None] * np.array([np.cos(heading), np.sin(heading)])
      pos[:, 0] = _bounce(path + normal * gap / 2)
      pos[:, 1] = _bounce(path - normal * gap / 2)
    elif kind == 1:  # juggling: a fast small ball above a swaying juggler
      freq = speed / (4 * 0.12)  # a 0.12-unit vertical throw at the same mean speed
      pos[:, 0] = centre + 0.02 * np.sin(2 * np.pi * 0.5 * t)[:, None] * axis
      pos[:, 1] = pos[:, 0] + np.array([0.0, -0.1]) - np.abs(
          np.sin(np.pi * freq * t))[:, None] * np.array([0.0, 0.12])
    else:  # dancing: the pair circles its centre
      omega = speed / (gap / 2)
      phase = omega * t + rng.uniform(0, 2 * np.pi)
      ring = np.stack([np.cos(phase), np.sin(phase)], -1) * gap / 2
      pos[:, 0], pos[:, 1] = centre + ring, centre - ring
  else:  # strikes: actor 0 lunges at actor 1 (contact), actor 1 is knocked back, then a pause
    pos[:, 0], pos[:, 1] = centre - axis * gap / 2, centre + axis * gap / 2
    strike_every = rng.uniform(0.5, 1.0)
    lunge = np.mod(t + rng.uniform(0, 1), strike_every) / strike_every  # [F] in [0, 1)
    reach = np.where(lunge < 0.25, lunge / 0.25, np.maximum(0.0, 1 - (lunge - 0.25) / 0.2))
    hit = np.where((lunge > 0.2) & (lunge < 0.6), np.exp(-(lunge - 0.2) * 12), 0.0)
    amplitude = speed * strike_every / 2.4  # the same mean speed as the other class
    pos[:, 0] += axis * (reach * amplitude)[:, None]
    pos[:, 1] += axis * (hit * amplitude * 0.8)[:, None]
    pos[:, :2] += rng.normal(0, 0.006, (spec.num_frames, 2, 2))
  for a in range(2, num_actors):  # bystanders walking slowly
    heading = rng.uniform(0, 2 * np.pi)
    pos[:, a] = _bounce(rng.uniform(0.15, 0.85, 2)[None] + rng.uniform(0.02, 0.1) * t[:, None] *
                        np.array([np.cos(heading), np.sin(heading)]))
  pos = np.clip(pos, 0.05, 0.95)
  return pos * np.array([spec.width, spec.height]), radii, colours


def _hard_render(spec: ClipSpec, indices: Sequence[int]) -> np.ndarray:
  """Hard set frames: shake, moving clutter, light changes and JPEG noise (both classes)."""
  rng = np.random.default_rng(spec.seed + 2)
  margin = max(4, min(spec.width, spec.height) // 10)
  h, w = spec.height + 2 * margin, spec.width + 2 * margin
  background = np.empty((h, w, 3), np.uint8)
  background[:] = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  for _ in range(int(rng.integers(6, 14))):  # static clutter
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    colour = tuple(int(c) for c in PALETTE[rng.integers(len(PALETTE))] // 2 + 40)
    cv2.rectangle(background, (x0, y0), (x0 + int(rng.integers(6, w // 3)),
                                         y0 + int(rng.integers(6, h // 3))), colour, -1)
  t = np.arange(spec.num_frames) / spec.fps
  shake_px = rng.uniform(0, 0.9) * margin
  shake = np.cumsum(rng.normal(0, 1, (spec.num_frames, 2)), 0)
  shake = np.clip(shake - shake.mean(0), -1, 1) * shake_px  # [F, 2] camera offset
  shake = shake + rng.normal(0, rng.uniform(0, 0.25) * margin, shake.shape)  # handheld jitter
  movers = int(rng.integers(0, 4))  # moving clutter: cars, leaves, ...
  mover_start = rng.uniform(0, 1, (movers, 2))
  mover_speed = rng.uniform(-0.5, 0.5, (movers, 2))
  mover_colour = PALETTE[rng.integers(len(PALETTE), size=movers)] // 3 + 60
  light = 1 + rng.uniform(0, 0.35) * np.sin(2 * np.pi * rng.uniform(0.05, 1.0) * t +
                                            rng.uniform(0, 6.3))
  light = light * np.where(rng.uniform(0, 1, spec.num_frames) < rng.uniform(0, 0.08),
                           rng.uniform(0.6, 1.4), 1.0)  # flicker
  quality = int(rng.integers(12, 45))
  centres, radii, colours = actor_tracks(spec)
  out = np.empty((len(indices), spec.height, spec.width, 3), np.uint8)
  for k, f in enumerate(indices):
    frame = background.copy()
    for m in range(movers):
      x, y = (_bounce(mover_start[m] + mover_speed[m] * t[f]) * [w, h]).astype(int)
      cv2.rectangle(frame, (x - 6, y - 4), (x + 6, y + 4),
                    tuple(int(c) for c in mover_colour[m]), -1)
    for (x, y), r, c in zip(centres[f] + margin, radii, colours):
      cv2.circle(frame, (int(x), int(y)), int(r), tuple(int(v) for v in c), -1, cv2.LINE_AA)
    dx, dy = np.clip(margin + shake[f], 0, 2 * margin).astype(int)
    frame = np.clip(frame[dy:dy + spec.height, dx:dx + spec.width] * light[f], 0, 255)
    ok, jpeg = cv2.imencode('.jpg', frame.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    out[k] = cv2.imdecode(jpeg, cv2.IMREAD_COLOR) if ok else frame
  return out


def render(spec: ClipSpec, indices: Sequence[int] = None) -> np.ndarray:
  """Frames of one clip (all, or those at `indices`), [F, H, W, 3] uint8 RGB."""
  if spec.difficulty == 'hard':
    return _hard_render(spec, range(spec.num_frames) if indices is None else indices)
  if indices is not None:
    return render(spec)[list(indices)]
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


def write_h264(path: str, frames: Iterable[np.ndarray], fps: float,
               keyframe_every: int = 0) -> None:
  """Encodes RGB frames [H, W, 3] (even H and W) to H.264 (yuv420p, libx264's default preset;
  `keyframe_every` 0: its default GOP of 250) in the container of `path`'s extension, with PyAV
  (OpenCV's pip wheel has no H.264 encoder). `frames` may be a generator."""
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=Fraction(fps).limit_denominator(1001))
    stream.pix_fmt = 'yuv420p'
    if keyframe_every:
      stream.codec_context.gop_size = keyframe_every
    for i, frame in enumerate(frames):
      if i == 0:
        stream.height, stream.width = frame.shape[:2]
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')))
    container.mux(stream.encode())  # flush the encoder's delayed frames


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
  centres, radii, _ = actor_tracks(spec)
  canvases = np.zeros((len(indices), spec.height, spec.width, 3), np.uint8)
  for canvas, i in zip(canvases, indices):
    for (x, y), r in zip(centres[i], radii):
      cv2.circle(canvas, (int(x), int(y)), int(r), (255, 255, 255), -1)
  return resize_and_crop_array(canvases, size)[..., 0] > 127


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
