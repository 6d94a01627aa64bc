"""The scan as a Beam pipeline: videos → time ranges → windows → RunInference → timelines.

  videos ─Reshuffle─ Probe (plan the timeline's windows, cut them into ranges of `range_s`)
         ─Reshuffle─ DecodeRange (seek to the range, decode its windows, clip records and
                     drift features) ─ RunInference (our ModelHandler, batched)
         ─ GroupByKey(video) ─ Finish (the timeline's segments and PNG, written atomically,
                               then the video's record)

A long video is several work items, one per range, that different workers decode. Each
failure is the video's, carried to Finish as its reason: the other videos go on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.ml.inference import base as inference

from vivit_tfx import extras
from vivit_tfx.data import clip_example, drift_stats, remote_files, video_reader
from vivit_tfx.inference import timeline
from vivit_tfx.scan import ledger

FAILED = 'failed'


@dataclasses.dataclass
class Range:
  """One work item: some consecutive windows of one video."""
  video: ledger.Video
  info: video_reader.VideoInfo
  index: int  # of the video's ranges
  count: int  # ranges of the video
  first: int  # index of windows[0] among the video's windows
  windows: List[timeline.Window]


def one_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else type(error).__name__


class ServingModelHandler(inference.ModelHandler):
  """RunInference's handler for a pushed model, through the scorer the timeline uses
  (`model_scorer`: a SavedModel's serving_default, or a `.tflite` model): [B] clips, each T
  JPEG frames → rows of probabilities [B, P]. (Beam's TensorFlow handler cannot load here: its
  module imports tensorflow_hub, which needs setuptools' pkg_resources.)"""

  def __init__(self, model_dir: str, batch_size: int = 16, threads: int = 0):
    super().__init__()
    self._model_dir = model_dir
    self._batch_size = batch_size
    self._threads = threads

  def load_model(self):
    # local: TensorFlow, in the worker that scores
    from vivit_tfx.inference import model_scorer  # pylint: disable=g-import-not-at-top
    from vivit_tfx.models.trainer import distribution  # pylint: disable=g-import-not-at-top
    if self._threads:
      distribution.limit_threads(self._threads)
    return model_scorer.load_scorer(self._model_dir, num_threads=self._threads or None)

  def run_inference(self, batch: Sequence[List[bytes]], model,
                    inference_args: Optional[Dict[str, Any]] = None):
    probs = model.score_jpegs(list(batch))  # [B, P]
    return [inference.PredictionResult(x, p) for x, p in zip(batch, probs)]

  def batch_elements_kwargs(self):
    # Full batches: a small model costs about twice as much per clip at batch 1 as at 16
    # (`vivit-tiny`'s serving_default, one core), and BatchElements would start at 1.
    return {'min_batch_size': self._batch_size, 'max_batch_size': self._batch_size}

  def get_metrics_namespace(self) -> str:
    return 'vivit_tfx_scan'


class Probe(beam.DoFn):
  """A video → its Ranges (the timeline's windows, `range_s` seconds of them each), or
  (key, failure) on the 'failed' output."""

  def __init__(self, clip, window_s: float, stride_s: float, range_s: float):
    self._clip, self._window_s, self._stride_s, self._range_s = clip, window_s, stride_s, range_s

  def process(self, video: ledger.Video):
    try:
      with remote_files.local_copy(video.path) as local:
        info = video_reader.probe(local)
    except Exception as e:  # pylint: disable=broad-except  # the video's, not the scan's
      yield beam.pvalue.TaggedOutput(FAILED, (video.key, _failure(video, one_line(e))))
      return
    windows = timeline.plan_windows(info.num_frames, info.fps, self._window_s, self._stride_s,
                                    self._clip.num_frames, self._clip.sample_fps)
    cuts: Dict[int, List[int]] = {}
    for i, w in enumerate(windows):
      cuts.setdefault(int(w.start_s // self._range_s), []).append(i)
    groups = list(cuts.values())
    for n, members in enumerate(groups):
      yield Range(video, info, n, len(groups), members[0], [windows[i] for i in members])


def _failure(video: ledger.Video, reason: str) -> Tuple[str, Any]:
  return ('failed', {'video': video, 'reason': reason})


class DecodeRange(beam.DoFn):
  """A Range → ((video key, window index, start_s, end_s, drift features), T JPEG frames) per
  window it decodes (JPEG as the timeline's scorer encodes them), then the range's outcome, (video key, ('range', …)), on the 'ranges'
  output for Finish (an error there fails the video, not the scan)."""

  def __init__(self, clip, threads: int = 0):
    self._clip, self._threads = clip, threads

  def setup(self):
    if self._threads:
      video_reader.set_decoder_threads(self._threads)

  def process(self, item: Range):
    error = None
    try:
      position = {id(w): item.first + n for n, w in enumerate(item.windows)}
      with remote_files.local_copy(item.video.path) as local:
        for w, frames in timeline.stream_windows(local, item.windows,
                                                 tuple(self._clip.frame_size), seek=True):
          jpegs = [clip_example.encode_jpeg(f, self._clip.jpeg_quality) for f in frames]
          yield ((item.video.key, position[id(w)], w.start_s, w.end_s,
                  drift_stats.clip_features(clip_example.decode_jpegs(jpegs))), jpegs)
    except Exception as e:  # pylint: disable=broad-except  # the video's, not the scan's
      error = f'{one_line(e)} (range {item.index + 1} of {item.count})'
    yield beam.pvalue.TaggedOutput('ranges', (item.video.key, (
        'range', {'video': item.video, 'info': item.info, 'index': item.index,
                  'count': item.count, 'error': error})))


def _scored(clip):
  """RunInference's (key, PredictionResult) → (video key, ('window', …))."""
  def to_item(keyed):
    (key, index, start_s, end_s, features), result = keyed
    return key, ('window', {'index': index, 'start_s': start_s, 'end_s': end_s,
                            'score': clip.positive_score(result.inference),
                            'features': features})
  return to_item


class Finish(beam.DoFn):
  """All of one video's pieces → its segments JSON and timeline PNG in videos/ (atomic), then
  its record; returns the record."""

  def __init__(self, out: str, clip, window_s: float, stride_s: float, threshold: float,
               model: str):
    self._out, self._clip = out, clip
    self._window_s, self._stride_s, self._threshold = window_s, stride_s, threshold
    self._model = model
    self._draw = True

  def setup(self):
    try:
      extras.require('report')
    except extras.MissingExtra:  # a worker image without the report extra: JSON only
      self._draw = False

  def process(self, keyed):
    key, items = keyed
    items = list(items)
    failed = [d for kind, d in items if kind == 'failed']
    ranges = [d for kind, d in items if kind == 'range']
    video = (failed or ranges)[0]['video']
    record = {'key': key, 'path': video.path, 'size': video.size, 'mtime': video.mtime,
              'model': self._model, 'stem': video.stem}
    errors = [r['error'] for r in ranges if r['error']] + [f['reason'] for f in failed]
    if not errors and len({r['index'] for r in ranges}) != ranges[0]['count']:
      errors.append('some ranges were not decoded')
    if errors:
      record.update(status=FAILED, reason=errors[0])
    else:
      record.update(self._write(video, ranges[0]['info'],
                                sorted((d for kind, d in items if kind == 'window'),
                                       key=lambda d: d['index'])))
    ledger.Ledger(self._out).write(record)
    yield record

  def _write(self, video: ledger.Video, info: video_reader.VideoInfo,
             scored: List[Dict[str, Any]]) -> Dict[str, Any]:
    if not scored:
      return {'status': FAILED, 'reason': 'no window could be decoded'}
    windows = [timeline.Window(d['start_s'], d['end_s'], [], d['score']) for d in scored]
    names = {kind: ledger.join(self._out, ledger.VIDEOS, f'{video.stem}.{kind}')
             for kind in ('timeline.png', 'segments.json')}
    with tempfile.TemporaryDirectory() as scratch:
      png = os.path.join(scratch, 'timeline.png') if self._draw else ''
      result = timeline.describe(video.path, info, windows, self._clip, self._window_s,
                                 self._stride_s, self._threshold, png)
      if png:
        result['png'] = names['timeline.png']
        with open(png, 'rb') as f:
          ledger.write_atomically(names['timeline.png'], f.read())
    ledger.write_atomically(names['segments.json'], json.dumps(result, indent=1).encode())
    found = result['segments']
    return {'status': 'scored', 'duration_s': result['duration_s'],
            'windows': len(windows), 'top_score': round(max(w.score for w in windows), 4),
            'flagged_s': round(sum(s['end_s'] - s['start_s'] for s in found), 3),
            'segments': len(found), 'json': names['segments.json'], 'png': result['png'],
            'features': _features(scored)}


# Drift features kept per video: at most this many windows, evenly spaced (a 10-hour video
# has 36,000 windows at 1 s).
MAX_FEATURE_ROWS = 256


def _features(scored: List[Dict[str, Any]]) -> Dict[str, List[float]]:
  """{feature: [value per kept window]} of a video's scored windows."""
  step = max(1, -(-len(scored) // MAX_FEATURE_ROWS))
  kept = scored[::step]
  return {f: [round(d['score'] if f == 'score' else d['features'][f], 4) for d in kept]
          for f in drift_stats.FEATURES}


def build(p: beam.Pipeline, videos: Iterable[ledger.Video], out: str, model_dir: str, clip,
          window_s: float, stride_s: float, threshold: float, range_s: float,
          batch_size: int, model: str, threads: int = 0):
  """Adds the scan of `videos` to `p`; returns the PCollection of their records."""
  probed = (p | 'Videos' >> beam.Create(list(videos))
            | 'SpreadVideos' >> beam.Reshuffle()
            | 'Probe' >> beam.ParDo(Probe(clip, window_s, stride_s, range_s)).with_outputs(
                FAILED, main='ranges'))
  decoded = (probed.ranges
             | 'SpreadRanges' >> beam.Reshuffle()
             | 'Decode' >> beam.ParDo(DecodeRange(clip, threads)).with_outputs(
                 'ranges', main='windows'))
  scored = (decoded.windows
            | 'Score' >> inference.RunInference(inference.KeyedModelHandler(
                ServingModelHandler(model_dir, batch_size, threads)))
            | 'Positive' >> beam.Map(_scored(clip)))
  return ((scored, decoded.ranges, probed[FAILED])
          | 'Together' >> beam.Flatten()
          | 'ByVideo' >> beam.GroupByKey()
          | 'Finish' >> beam.ParDo(Finish(out, clip, window_s, stride_s, threshold, model)))
