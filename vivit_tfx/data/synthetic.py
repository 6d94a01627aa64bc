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
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

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
  """The hard benchmark: 2–30 s videos, smooth against impulsive motion of a pair at matched
  speeds, a handheld camera, clutter, light changes, noise."""
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


REFERENCE_STEP_S = 1 / 8  # the hard set's speeds are measured between frames this far apart
# Label 0's pair also travels together, at a share of its relative speed drawn from TRAVEL: it
# balances the actors' frame differences between the classes at 64 px and 8 fps
# (`tests/test_synthetic.py`), which the impulsive pair's steps in one direction (a lunge and
# its knock-back within one sampled frame) raise beyond what its relative motion shows.
TRAVEL = (0.0, 0.45)
# Label 0's speed swells and ebbs smoothly (0.3–1 Hz) by up to this share of its mean, so that
# the frame differences of both classes vary over time: sudden against smooth changes of speed
# tell them apart, not steady against bursty motion energy.
MODULATION = 0.9
# A pair's motion: (times [T] s, scale) → offsets [T, 2, 2] of actors 0 and 1 in short sides, in
# the pair's frame (x: from actor 0 towards actor 1 at rest); steps are linear in the scale.
PairMotion = Callable[[np.ndarray, float], np.ndarray]


def _smooth_motion(rng: np.random.Generator, speed: float, contact: float,
                   duration: float) -> PairMotion:
  """Label 0, smooth and periodic: dancing face to face (the gap opens and closes), dancing
  round each other, or juggling (a ball loops beside a still player), at a smoothly swelling
  and ebbing speed (MODULATION). `contact`: the centre distance at which the pair touches; the
  frequency puts the scale near a size of the scene."""
  del duration  # periodic: the same at any length
  kind, phase = int(rng.integers(3)), rng.uniform(0, 2 * np.pi)
  depth, mod_freq, mod_phase = rng.uniform([0.0, 0.3, 0.0], [MODULATION, 1.0, 2 * np.pi])

  def cycles(t, freq):  # the phase of a motion at `freq` on average
    return 2 * np.pi * freq * (t + depth * np.sin(2 * np.pi * mod_freq * t + mod_phase) /
                               (2 * np.pi * mod_freq))
  if kind == 0:  # relative path per cycle: 4 × scale
    freq = speed / (4 * contact * rng.uniform(0.4, 0.8))

    def motion(t, scale):
      gap = contact + scale * (1 + np.cos(cycles(t, freq) + phase))
      return np.stack([np.stack([-gap / 2, gap / 2], 1), np.zeros((len(t), 2))], -1)
  elif kind == 1:  # mirror images on a circle of radius `scale`: 4π × scale per cycle
    freq = speed / (4 * np.pi * contact / 2 * rng.uniform(1.0, 1.6))

    def motion(t, scale):
      angle = cycles(t, freq) + phase
      ring = scale * np.stack([np.cos(angle), np.sin(angle)], -1)
      return np.stack([-ring, ring], 1)
  else:  # an ellipse of half-axes scale and flat × scale: about π(1 + flat) × scale per cycle
    flat = rng.uniform(0.3, 1.0)
    freq = speed / (np.pi * (1 + flat) * contact * rng.uniform(0.4, 0.8))

    def motion(t, scale):
      angle = cycles(t, freq) + phase
      ball = np.stack([contact + scale * (1 + np.cos(angle)), flat * scale * np.sin(angle)], -1)
      return np.stack([np.zeros_like(ball), ball], 1)
  # Both travel together round a slow loop (TRAVEL).
  loop = rng.uniform([0.05, 0.3, 0.0], [0.12, 1.0, 2 * np.pi])  # radius, flatness, phase
  loop_freq = speed * rng.uniform(*TRAVEL) / (np.pi * (1 + loop[1]) * loop[0])

  def travelling(t, scale):
    angle = 2 * np.pi * loop_freq * t + loop[2]
    travel = loop[0] * np.stack([np.cos(angle), loop[1] * np.sin(angle)], -1)
    return motion(t, scale) + travel[:, None]
  return travelling


def _impulsive_motion(rng: np.random.Generator, speed: float, contact: float,
                      duration: float) -> PairMotion:
  """Label 1, impulsive and irregular: strikes (the attacker lunges into contact at a constant
  speed and stops dead, the other is knocked back at once, the attacker steps back) and
  collisions (both rush together and rebound), along the pair's axis ± 0.4 rad, at random
  intervals. Each event's relative path is 2 × scale; the attacker is the one whose strike
  brings the pair back towards where it started."""
  unit = 2 * contact * rng.uniform(0.8, 1.3) / speed  # s per event (scale near that reach)
  rows, start, drift = [], -rng.uniform(0, unit), 0.0
  while start < duration:
    times = rng.uniform([0.2, 0.1, 0.3, 0.0], [0.3, 0.2, 0.5, 0.4]) * unit  # lunge … pause
    knock, angle = rng.uniform(0.5, 0.9), rng.uniform(-0.4, 0.4)
    way = np.array([np.cos(angle), np.sin(angle)])
    if rng.uniform() < 0.3:  # collision: [lunge, knock-back, step back] per actor
      moves = np.array([[0.5, -0.5 * knock, -0.5 * (1 - knock)]] * 2) * [[1], [-1]]
    else:
      attacker = int(drift > 0 or (drift == 0 and rng.uniform() < 0.5))
      sign = 1 - 2 * attacker  # actor 0 strikes towards +x
      moves = np.zeros((2, 3))
      moves[attacker] = [sign, 0.0, -sign * (1 - knock)]
      moves[1 - attacker, 1] = sign * knock
      drift += sign * knock
    rows.append((start, *times[:3], moves[..., None] * way))  # moves: [actor, phase, 2]
    start += times.sum()
  starts, lunges, knocks, backs = (np.array([r[i] for r in rows]) for i in range(4))
  moves = np.stack([r[4] for r in rows])  # [E, 2, 3, 2]

  def motion(t, scale):
    since = t[:, None] - starts[None]  # [T, E]
    lunge = np.clip(since / lunges, 0, 1)  # constant speed, sudden start and stop
    hit = np.clip((since - lunges) / knocks, 0, 1)
    hit = (1 - np.exp(-4 * hit)) / (1 - np.exp(-4))  # fastest at the moment of contact
    back = (1 - np.cos(np.pi * np.clip((since - lunges - knocks) / backs, 0, 1))) / 2
    offsets = np.einsum('tep,eapj->taj', np.stack([lunge, hit, back], -1), moves)
    rest = np.array([[-1.0, 0.0], [1.0, 0.0]]) * (contact + scale) / 2
    return rest + scale * offsets
  return motion


def _hard_tracks(spec: ClipSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Hard set: the pair's smooth periodic (label 0) or impulsive (label 1) motion, and slow
  bystanders.

  The pair's motion is scaled so that its relative motion (actor 1 − actor 0), sampled every
  1/8 s, averages `spec.speed` short sides per second in both classes: the amount of motion is
  the same, its kind (sudden starts and stops at irregular times, or smooth and periodic) is
  the label.
  """
  rng = np.random.default_rng(spec.seed)
  size = np.array([spec.width, spec.height])
  side = size.min()
  num_actors = int(rng.integers(2, 5))
  radii = rng.uniform(0.07, 0.12, num_actors)  # short sides
  colours = PALETTE[rng.choice(len(PALETTE), num_actors, replace=False)]
  duration = spec.num_frames / spec.fps
  speed = spec.speed or float(np.mean(SyntheticConfig.pair_speed))
  contact = (radii[0] + radii[1]) * rng.uniform(0.85, 1.0)  # centre distance at contact
  motion = (_smooth_motion if spec.label == 0 else _impulsive_motion)(
      rng, speed, contact, duration)
  unit = motion(np.arange(0, max(duration, 1.0), REFERENCE_STEP_S), 1.0)
  step = np.linalg.norm(np.diff(unit[:, 1] - unit[:, 0], axis=0), axis=-1).mean()
  scale = speed * REFERENCE_STEP_S / max(step, 1e-9)
  angle = rng.uniform(0, 2 * np.pi)
  rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  t = np.arange(spec.num_frames) / spec.fps  # [F]
  pos = np.empty((spec.num_frames, num_actors, 2))
  pos[:, :2] = rng.uniform(0.35, 0.65, 2) * size + motion(t, scale) @ rotation.T * side
  for a in range(2, num_actors):  # bystanders walking slowly
    heading = rng.uniform(0, 2 * np.pi)
    pos[:, a] = size * _bounce(rng.uniform(0.15, 0.85, 2)[None] + rng.uniform(0.02, 0.1) *
                               t[:, None] * np.array([np.cos(heading), np.sin(heading)]))
  return np.clip(pos, 0.05 * size, 0.95 * size), radii * side, colours


def _margin(spec: ClipSpec) -> int:
  """Pixels of hard-set scene beyond each edge of the frame (room for the camera to move)."""
  return max(4, min(spec.width, spec.height) // 10)


def camera_offsets(spec: ClipSpec) -> np.ndarray:
  """Where each frame is cut from the hard set's larger scene, [F, 2] (x, y) pixels in
  [0, 2 × margin]: a handheld camera's slow sway and rare jolts that settle within about a
  second. The default set's camera stands still (zeros)."""
  if spec.difficulty != 'hard':
    return np.zeros((spec.num_frames, 2), int)
  rng = np.random.default_rng([spec.seed, 2])
  margin, duration = _margin(spec), spec.num_frames / spec.fps
  t = np.arange(spec.num_frames)[:, None] / spec.fps  # [F, 1]
  sway = rng.uniform(0.1, 0.5, 2) * margin * np.sin(
      2 * np.pi * rng.uniform(0.05, 0.3, 2) * t + rng.uniform(0, 2 * np.pi, 2))
  jolts = rng.uniform(0, duration, rng.poisson(0.2 * duration))  # 0.2 per second
  since = t - jolts[None]  # [F, J]
  settle = np.where(since >= 0, np.exp(-np.maximum(since, 0) / 0.3), 0.0)
  offsets = margin + sway + settle @ rng.normal(0, 0.2 * margin, (len(jolts), 2))
  return np.clip(np.round(offsets), 0, 2 * margin).astype(int)


def _hard_render(spec: ClipSpec, indices: Sequence[int]) -> np.ndarray:
  """Hard set frames: a handheld camera, moving clutter, light changes and JPEG noise (both
  classes)."""
  rng = np.random.default_rng(spec.seed + 2)
  margin = _margin(spec)
  h, w = spec.height + 2 * margin, spec.width + 2 * margin
  background = np.empty((h, w, 3), np.uint8)
  background[:] = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
  for _ in range(int(rng.integers(6, 14))):  # static clutter
    x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
    colour = tuple(int(c) for c in PALETTE[rng.integers(len(PALETTE))] // 2 + 40)
    cv2.rectangle(background, (x0, y0), (x0 + int(rng.integers(6, w // 3)),
                                         y0 + int(rng.integers(6, h // 3))), colour, -1)
  t = np.arange(spec.num_frames) / spec.fps
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
  camera = camera_offsets(spec)
  out = np.empty((len(indices), spec.height, spec.width, 3), np.uint8)
  for k, f in enumerate(indices):
    frame = background.copy()
    for m in range(movers):
      x, y = (_bounce(mover_start[m] + mover_speed[m] * t[f]) * [w, h]).astype(int)
      cv2.rectangle(frame, (x - 6, y - 4), (x + 6, y + 4),
                    tuple(int(c) for c in mover_colour[m]), -1)
    for (x, y), r, c in zip(centres[f] + margin, radii, colours):
      cv2.circle(frame, (int(x), int(y)), int(r), tuple(int(v) for v in c), -1, cv2.LINE_AA)
    dx, dy = camera[f]
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


def write_video(path: str, frames: Iterable[np.ndarray], fps: float) -> None:
  """Encodes RGB frames [H, W, 3] to `path`; the codec follows the extension (.mp4 → mp4v,
  .avi → MJPG). `frames` may be a generator: only the frame being written is held."""
  container = os.path.splitext(path)[1].lstrip('.').lower()
  writer = None
  for frame in frames:
    if writer is None:
      height, width = frame.shape[:2]
      writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*FOURCC[container]), fps,
                               (width, height))
      if not writer.isOpened():
        raise RuntimeError(f'{path}: OpenCV cannot write .{container} video here')
    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
  if writer is None:
    raise ValueError(f'{path}: no frames to write')
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
  truth = []
  per_segment = int(round(segment_s * fps))

  def scenes():  # one segment's frames in memory at a time (an hour of 720p would not fit)
    for i, label in enumerate(segments):
      rng = np.random.default_rng([seed, i])
      spec = ClipSpec(index=i, label=int(label), width=size[0], height=size[1], fps=fps,
                      num_frames=per_segment, container='mp4', seed=int(rng.integers(2**31)))
      truth.append({'start_s': i * segment_s, 'end_s': (i + 1) * segment_s,
                    'label': int(label)})
      yield from render(spec)

  write_video(path, scenes(), fps)
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


def motion_steps(spec: ClipSpec, indices: Sequence[int],
                 size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
  """Motion between consecutive frames of `indices` in pixels of a `size` px frame (ingestion's
  resize + centre crop scales by size / short side), [len(indices) - 1] each: the pair's
  relative motion (actor 1 - actor 0) and the camera's (`camera_offsets`)."""
  indices = list(indices)
  pair = actor_tracks(spec)[0][indices][:, :2]
  scale = size / min(spec.width, spec.height)

  def steps(x):
    return np.linalg.norm(np.diff(x, axis=0), axis=-1) * scale
  return steps(pair[:, 1] - pair[:, 0]), steps(camera_offsets(spec)[indices])


def pixel_statistics(frame: np.ndarray) -> np.ndarray:
  """Per-channel mean and std of one frame, [H, W, 3] → [6] (a single-frame feature)."""
  x = frame.reshape(-1, 3).astype(np.float32)
  return np.concatenate([x.mean(0), x.std(0)])


def labels_from_paths(paths: Sequence[str]) -> List[int]:
  """Label of each generated path, from its class folder."""
  return [CLASS_NAMES.index(os.path.basename(os.path.dirname(p))) for p in paths]
