"""A pushed model as one function of clips, whichever form it was shipped in: a SavedModel
(TF Serving layout) or a `.tflite` file (`vivit-tfx export`), read with the TFLite interpreter
that TensorFlow ships.

`load_scorer(model)` → a `ClipScorer`: `scorer(clips)` takes uint8 frames [B, T, H, W, 3] as a
video reader gives them (of the model's frame size; another size is resized and cropped as
serving conforms it) and returns the probabilities serving_default returns ([B, 1] binary,
[B, K] multi-class). Frames go through the pixels serving sees: JPEG at the model's ingestion
quality (OpenCV, as ingestion encodes) and decoded as the graph decodes (`tf.io.decode_jpeg`).
`score_records` scores whole clip records (N frame slots, K evaluation views averaged), as
serving_default scores a video. predict, the timeline and `watch` score through this.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from vivit_tfx.data import clip_example, sampling
from vivit_tfx.data.clip_config import TFLITE_SUFFIX, ModelClipConfig, clip_config_of
from vivit_tfx.inference import predict

CLIPS_INPUT = 'clips'  # the TFLite model's input: uint8 [B, T, H, W, 3]


def is_tflite(model: str) -> bool:
  return model.endswith(TFLITE_SUFFIX)


class ClipScorer:
  """uint8 clips [B, T, H, W, 3] → probabilities [B, P] (`__call__`); subclasses score JPEG
  clips (`score_jpegs`)."""

  def __init__(self, model: str, clip: ModelClipConfig):
    self.model = model  # the SavedModel folder or .tflite file
    self.clip = clip

  def __call__(self, clips: np.ndarray) -> np.ndarray:
    clips = np.asarray(clips)
    if clips.ndim != 5 or clips.shape[-1] != 3:
      raise ValueError(f'clips must be uint8 [B, T, H, W, 3], got shape {clips.shape}')
    return self.score_jpegs([[clip_example.encode_jpeg(f, self.clip.jpeg_quality) for f in c]
                             for c in clips])

  def score_jpegs(self, clips: Sequence[Sequence[bytes]]) -> np.ndarray:
    """[B][T] JPEG frames (one clip each) → probabilities [B, P]."""
    raise NotImplementedError

  def prepare(self, max_batch: int) -> None:
    """Makes ready what batches of up to `max_batch` clips need (nothing by default)."""
    del max_batch

  def score_records(self, records: Sequence[Sequence[bytes]]) -> np.ndarray:
    """[B][N] JPEG frame slots of clip records ('' = empty) → probabilities [B, P]: the mean
    over each record's K evaluation views (`sampling.view_indices`), as serving_default."""
    views = [record_views(r, self.clip) for r in records]  # [B][K][T]
    flat = self.score_jpegs([v for vs in views for v in vs]) if views else np.zeros((0, 1))
    out, start = [], 0
    for vs in views:
      out.append(flat[start:start + len(vs)].mean(axis=0))
      start += len(vs)
    return np.stack(out) if out else flat


def record_views(record: Sequence[bytes], clip: ModelClipConfig) -> List[List[bytes]]:
  """A record's K evaluation views, each T JPEG frames (looped when the record is short)."""
  frames = [f for f in record if f]
  if not frames:
    raise ValueError('a clip record without frames')
  positions = sampling.view_indices(list(range(len(frames))), clip.num_frames, clip.num_views)
  return [[frames[i] for i in view] for view in positions]


def jpeg_pixels(clips: Sequence[Sequence[bytes]], clip: ModelClipConfig) -> np.ndarray:
  """[B][T] JPEG frames → uint8 [B, T, H, W, 3] as the graph decodes them; a frame of another
  size than the clip config's is conformed as serving_default conforms it
  (`export.conform_frames`: resized and cropped, then JPEG again). One graph call for all."""
  size = tuple(clip.frame_size)
  lengths = sorted({len(frames) for frames in clips})
  if lengths and lengths != [clip.num_frames]:
    raise ValueError(f'every clip must have {clip.num_frames} frames, got {lengths}')
  flat = [f for frames in clips for f in frames]
  if not flat:
    return np.empty((len(clips), clip.num_frames, *size, 3), np.uint8)
  pixels = _frame_decoder(size, clip.jpeg_quality)(tf.constant(flat, tf.string)).numpy()
  return pixels.reshape(len(clips), clip.num_frames, *size, 3)


@functools.lru_cache(maxsize=8)
def _frame_decoder(size: Tuple[int, int], quality: int):
  """A compiled graph: JPEG frames [N] → uint8 [N, *size, 3], conformed by serving's own
  `export.conform_frames`, then decoded as the serving graph decodes them."""
  # local: the exporter loads Keras and TFT, which only a TFLite model's scoring needs here
  from vivit_tfx.models.trainer import export  # pylint: disable=g-import-not-at-top

  def decode(jpeg):  # [] string → uint8 [*size, 3]
    return tf.ensure_shape(tf.io.decode_jpeg(jpeg, channels=3), (*size, 3))

  return tf.function(lambda jpegs: tf.map_fn(
      decode, export.conform_frames(jpegs, size, quality),
      fn_output_signature=tf.TensorSpec((*size, 3), tf.uint8)),
                     input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)


class SavedModelScorer(ClipScorer):
  """The SavedModel's serving_default (loaded once per process: `predict.saved_model`)."""

  def __init__(self, model_dir: str):
    super().__init__(model_dir, clip_config_of(model_dir))
    self._serve = predict.saved_model(model_dir).signatures['serving_default']

  def score_jpegs(self, clips: Sequence[Sequence[bytes]]) -> np.ndarray:
    return self.score_records(clips)

  def score_records(self, records: Sequence[Sequence[bytes]]) -> np.ndarray:
    examples = [clip_example.frames_example([f for f in r if f]) for r in records]
    return self._serve(examples=tf.constant(examples, tf.string))['probabilities'].numpy()


class TFLiteScorer(ClipScorer):
  """A `.tflite` model (`vivit-tfx export`) on `tf.lite.Interpreter`; thread-safe (one call at
  a time). A batch is scored in chunks of powers of two up to `MAX_CHUNK` (21 clips: 16 + 4 +
  1), one interpreter allocated once per chunk size: a batch size that changes from call to
  call (`watch`'s, one window per camera waiting) never resizes and reallocates tensors. Each
  interpreter holds its own arena and packed weights: at most five (1, 2, 4, 8, 16), a few
  times a tiny model's memory."""

  MAX_CHUNK = 16

  def __init__(self, path: str, clip: Optional[ModelClipConfig] = None,
               content: Optional[bytes] = None, num_threads: Optional[int] = None):
    super().__init__(path, clip or clip_config_of(path))
    if content is None:
      with tf.io.gfile.GFile(path, 'rb') as f:
        content = f.read()
    self.size = len(content)  # bytes of the flatbuffer
    self._content, self._num_threads = content, num_threads
    self._interpreters: Dict[int, tf.lite.Interpreter] = {}  # chunk size → interpreter
    interpreter = self._interpreter(1)
    self._input = interpreter.get_input_details()[0]
    self._output = interpreter.get_output_details()[0]
    self._lock = threading.Lock()
    shape = tuple(int(d) for d in self._input['shape'][1:])
    want = (self.clip.num_frames, *self.clip.frame_size, 3)
    if shape != want:
      raise ValueError(f'{path}: the model takes clips {list(shape)}, its clip config says '
                       f'{list(want)}: not the clip config exported with it')

  def _interpreter(self, batch: int) -> tf.lite.Interpreter:
    """The interpreter with its input's batch dimension fixed at `batch` (made once)."""
    if batch not in self._interpreters:
      try:
        interpreter = tf.lite.Interpreter(model_content=self._content,
                                          num_threads=self._num_threads)
      except ValueError as e:
        raise ValueError(f'{self.model}: not a TFLite model '
                         f'({str(e).splitlines()[0][:200]})') from None
      details = interpreter.get_input_details()[0]
      interpreter.resize_tensor_input(details['index'], [batch, *details['shape'][1:]])
      interpreter.allocate_tensors()
      self._interpreters[batch] = interpreter
    return self._interpreters[batch]

  def prepare(self, max_batch: int) -> None:
    """Allocates the interpreter of every chunk size a batch of up to `max_batch` clips is
    split into, so that no caller waits for one mid-stream."""
    top = min(max(1, max_batch), self.MAX_CHUNK)
    with self._lock:
      for b in range(top.bit_length()):
        self._interpreter(1 << b)

  @classmethod
  def chunks(cls, n: int) -> List[int]:
    """`n` as chunk sizes, largest first: `MAX_CHUNK`s, then the binary digits of the rest."""
    sizes = [cls.MAX_CHUNK] * (n // cls.MAX_CHUNK)
    rest = n % cls.MAX_CHUNK
    return sizes + [1 << b for b in reversed(range(rest.bit_length())) if rest >> b & 1]

  def score_jpegs(self, clips: Sequence[Sequence[bytes]]) -> np.ndarray:
    return self.score_pixels(jpeg_pixels(clips, self.clip))

  def score_pixels(self, pixels: np.ndarray) -> np.ndarray:
    """uint8 [B, T, H, W, 3] already through the JPEG round trip → probabilities [B, P]."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    out, start = [np.zeros((0, int(self._output['shape'][-1])), np.float32)], 0
    with self._lock:
      for size in self.chunks(len(pixels)):
        interpreter = self._interpreter(size)
        interpreter.set_tensor(self._input['index'], pixels[start:start + size])
        interpreter.invoke()
        out.append(np.array(interpreter.get_tensor(self._output['index']), np.float32))
        start += size
    return np.concatenate(out)


def load_scorer(model: str, num_threads: Optional[int] = None) -> ClipScorer:
  """A `.tflite` file → TFLiteScorer; a SavedModel folder → SavedModelScorer."""
  if is_tflite(model):
    if not tf.io.gfile.exists(model):
      raise ValueError(f'{model}: no such file')
    return TFLiteScorer(model, num_threads=num_threads)
  if not tf.io.gfile.exists(os.path.join(model, 'saved_model.pb')):
    raise ValueError(f'{model}: neither a SavedModel folder nor a .tflite file')
  return SavedModelScorer(model)
