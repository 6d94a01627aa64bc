"""`vivit-tfx predict --timeline`: when does the violence happen in a long video?

A window slides by `stride_s`; each window is sampled to T frames as the model's evaluation
samples a clip (T frames every `sampling.frame_stride` source frames, a window of T x stride
source frames, about T / sample_fps s; models without a rate: T frames spread over `window_s`)
and scored by the pushed model in batches. Frames are streamed: only the frames of windows
still open are held, so memory does not grow with the video's length.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from vivit_tfx import extras, outputs
from vivit_tfx.data import sampling, video_reader
from vivit_tfx.inference import predict


@dataclasses.dataclass
class Window:
  start_s: float
  end_s: float
  indices: List[int]  # the T source frames sampled from this window
  score: Optional[float] = None  # P(positive class), see ModelClipConfig.positive_score


def plan_windows(num_frames: int, fps: float, window_s: float, stride_s: float,
                 clip_frames: int, sample_fps: float = 0.0) -> List[Window]:
  """Windows over the whole video, each sampled to `clip_frames` frame indices.

  With a model's sampling rate (`sample_fps` > 0) a window is one clip as evaluation takes it:
  `clip_frames` frames every `sampling.frame_stride` source frames (`window_s` is ignored: a
  window is clip_frames x stride source frames).
  """
  if window_s <= 0 or stride_s <= 0:
    raise ValueError('window and stride must be positive seconds')
  fps = fps or sampling.DEFAULT_FPS
  if sample_fps > 0:
    length = clip_frames * sampling.frame_stride(fps, sample_fps)
  else:
    length = int(round(window_s * fps))
  length = max(1, min(num_frames, length))
  stride = max(1, int(round(stride_s * fps)))
  starts = list(range(0, num_frames - length + 1, stride)) or [0]
  if sample_fps > 0:
    offsets = sampling.frames_at_rate(0.0, clip_frames, fps, sample_fps, length)
  else:
    offsets = sampling.uniform_indices(length, clip_frames)
  return [Window(s / fps, (s + length) / fps, [s + i for i in offsets]) for s in starts]


def stream_windows(path: str, windows: List[Window], size: Tuple[int, int],
                   seek: bool = False) -> Iterator[Tuple[Window, np.ndarray]]:
  """Yields (window, frames [T, H, W, 3]) in order, decoding the video once, front to back
  (`seek`: jumping to the first window's frames, `video_reader.iter_frames`)."""
  wanted: Dict[int, List[Tuple[int, int]]] = {}
  for w_index, w in enumerate(windows):
    for slot, frame in enumerate(w.indices):
      wanted.setdefault(frame, []).append((w_index, slot))
  pending: Dict[int, Dict[int, np.ndarray]] = {}
  for position, frame in video_reader.iter_frames(path, list(wanted), size, seek):
    for w_index, slot in wanted[position]:
      slots = pending.setdefault(w_index, {})
      slots[slot] = frame
      if len(slots) == len(windows[w_index].indices):  # every slot has its frame
        done = pending.pop(w_index)
        yield windows[w_index], np.stack([done[i] for i in range(len(done))])


def score(path: str, model_dir: str, window_s: float = 2.0, stride_s: float = 1.0,
          batch_size: int = 16) -> Tuple[video_reader.VideoInfo, List[Window]]:
  """Scores every window of `path` with the model (a SavedModel's serving_default, or a
  `.tflite` model: `model_scorer`)."""
  # local: TensorFlow, where a model is loaded (see `predict.predict`).
  from vivit_tfx.inference import model_scorer  # pylint: disable=g-import-not-at-top
  scorer = model_scorer.load_scorer(model_dir)
  clip = scorer.clip
  info = video_reader.probe(path)
  windows = plan_windows(info.num_frames, info.fps, window_s, stride_s, clip.num_frames,
                         clip.sample_fps)
  batch: List[Tuple[Window, np.ndarray]] = []

  def flush():
    probs = scorer(np.stack([frames for _, frames in batch]))  # [B, T, H, W, 3] → [B, P]
    for (w, _), p in zip(batch, probs):
      w.score = clip.positive_score(p)
    batch.clear()

  for w, frames in stream_windows(path, windows, tuple(clip.frame_size)):
    batch.append((w, frames))
    if len(batch) == batch_size:
      flush()
  if batch:
    flush()
  return info, [w for w in windows if w.score is not None]


def segments(windows: List[Window], threshold: float = 0.5) -> List[Dict[str, float]]:
  """Runs of consecutive windows scoring ≥ threshold, each as [start_s, end_s] and its peak.

  A window below the threshold ends a segment; a segment that would start before the previous
  one ends (overlapping windows) is merged into it, so segments never overlap.
  """
  out: List[Dict[str, float]] = []
  previous_above = False
  for w in windows:
    above = w.score >= threshold
    if above and (previous_above or (out and w.start_s < out[-1]['end_s'])):
      out[-1]['end_s'] = max(out[-1]['end_s'], w.end_s)
      out[-1]['peak_score'] = max(out[-1]['peak_score'], w.score)
    elif above:
      out.append({'start_s': w.start_s, 'end_s': w.end_s, 'peak_score': w.score})
    previous_above = above
  return [{k: round(v, 3) for k, v in s.items()} for s in out]


def plot(windows: List[Window], found: List[Dict[str, float]], threshold: float, path: str,
         title: str, truth: Optional[List[Dict[str, float]]] = None,
         positive: str = 'positive class') -> str:
  """P(positive class) against time, detected segments shaded (and the truth, if known)."""
  plt = extras.pyplot()
  fig, ax = plt.subplots(figsize=(11.5, 3.2))
  centres = [(w.start_s + w.end_s) / 2 for w in windows]
  ax.plot(centres, [w.score for w in windows], '-o', ms=3, color='#c0392b',
          label=f'P({positive}) per window')
  ax.axhline(threshold, ls='--', color='#555555', lw=0.8, label=f'threshold {threshold}')
  for i, s in enumerate(found):
    ax.axvspan(s['start_s'], s['end_s'], color='#e74c3c', alpha=0.15,
               label='detected' if i == 0 else None)
  for i, t in enumerate(x for x in truth or [] if x['label'] == 1):
    ax.axvspan(t['start_s'], t['end_s'], ymin=0, ymax=0.06, color='#2c3e50',
               label=f'true {positive}' if i == 0 else None)
  ax.set(xlabel='time (s)', ylabel=f'P({positive})', ylim=(-0.02, 1.02), title=title)
  ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def window_s_for(clip, window_s: Optional[float]) -> float:
  """The window length: a model with a sampling rate fixes it (a window is one clip of T frames
  at its rate, as evaluation scored it: about T / sample_fps s, exactly T x stride source
  frames), and a different `window_s` is refused (ValueError); otherwise `window_s` (default
  2 s)."""
  if clip.sample_fps <= 0:
    return 2.0 if window_s is None else window_s
  fixed = clip.num_frames / clip.sample_fps
  if window_s is not None and abs(window_s - fixed) > 1e-6:
    raise ValueError(f'--window-s {window_s:g}: this model scores clips of {clip.num_frames} '
                     f'frames at {clip.sample_fps:g} fps, so a window is about {fixed:g} s (the '
                     'span it was evaluated on); leave --window-s out (--stride-s is honoured)')
  return fixed


def output_stems(paths: List[str]) -> Dict[str, str]:
  """The name each input's outputs get: its file stem, plus a short hash of its path where two
  inputs share a stem (a/x.mp4 and b/x.mp4 → x-1a2b3c4d, x-5e6f7a8b)."""
  stems = {p: os.path.splitext(os.path.basename(p))[0] for p in paths}
  shared = collections.Counter(stems[p] for p in set(paths))
  return {p: s if shared[s] == 1 else
          f'{s}-{hashlib.sha256(os.path.abspath(p).encode()).hexdigest()[:8]}'
          for p, s in stems.items()}


def run(path: str, model_dir: str, out_dir: str, window_s: Optional[float] = None,
        stride_s: float = 1.0, threshold: float = 0.5, overwrite: bool = False,
        stem: Optional[str] = None) -> Dict[str, object]:
  """Scores, merges and draws; writes <stem>.timeline.png and <stem>.segments.json (stem: the
  video's, or `output_stems`'), never over a file of the user's (`outputs.OutputFolder`)
  unless `overwrite`."""
  extras.require('report')  # before the model is loaded: the timeline is drawn with matplotlib
  stem = stem or os.path.splitext(os.path.basename(path))[0]
  folder = outputs.OutputFolder(out_dir, overwrite)
  png_path, json_path = folder.claim(
      f'{stem}.timeline.png', f'{stem}.segments.json')
  clip = predict.clip_config_of(model_dir)
  window_s = window_s_for(clip, window_s)
  info, windows = score(path, model_dir, window_s, stride_s)
  result = describe(path, info, windows, clip, window_s, stride_s, threshold, png_path)
  with open(json_path, 'w') as f:
    json.dump(result, f, indent=1)
  folder.done()
  result['json'] = json_path
  return result


def positive_name(clip) -> str:
  """The name of the class whose probability the timeline draws."""
  return (clip.class_names[clip.positive_index] if clip.positive_index is not None
          else f'not {clip.class_names[0]}')


def describe(path: str, info: video_reader.VideoInfo, windows: List[Window], clip,
             window_s: float, stride_s: float, threshold: float,
             png_path: str) -> Dict[str, object]:
  """Merges scored windows into segments, draws the timeline at `png_path` (a local path; ''
  draws nothing) and returns what <stem>.segments.json holds."""
  positive = positive_name(clip)
  found = segments(windows, threshold)
  truth_file = path + '.segments.json'
  truth = json.load(open(truth_file)) if os.path.exists(truth_file) else None
  png = png_path and plot(windows, found, threshold, png_path,
                          f'{os.path.basename(path)} ({info.duration_s:.0f} s, window '
                          f'{window_s} s, stride {stride_s} s)', truth, positive)
  return {'video': path, 'duration_s': round(info.duration_s, 3), 'score': f'P({positive})',
          'window_s': window_s,
          'stride_s': stride_s, 'threshold': threshold, 'segments': found,
          'windows': [{'start_s': round(w.start_s, 3), 'end_s': round(w.end_s, 3),
                       'score': round(w.score, 4)} for w in windows],
          'png': png}
