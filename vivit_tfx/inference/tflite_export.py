"""`vivit-tfx export --format tflite`: a pushed SavedModel → a `.tflite` model for edge devices,
float32, float16 or int8, with the model's clip config beside it.

The TFLite model takes uint8 clips [B, T, H, W, 3] (frames as serving decodes them, the clip
config's T and frame size) and returns serving_default's probabilities: the pixel
normalisation of the model's Transform graph (a per-channel affine map, read off the graph by
probing it), then the exported ViViT. Frames are JPEG-encoded and decoded before the model, as
serving does (`model_scorer.ClipScorer`), so scores match serving_default's.

int8: weights and activations quantised (float fallback where TFLite has no int8 kernel),
calibrated on clips of the train split sampled as serving samples them (each record's K
evaluation views, `model_scorer.record_views`) and decoded as serving decodes them; by default
('norm-float', `INT8_MODES`) the normalisation layers' ops stay float (selective quantisation).
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from vivit_tfx import outputs
from vivit_tfx.data import drift_stats, features
from vivit_tfx.data.clip_config import (TFLITE_FILE_STEMS, TFLITE_QUANTIZATIONS, TFLITE_SUFFIX,
                                        ModelClipConfig, clip_config_of, clip_config_path)
from vivit_tfx.inference import model_scorer, predict
from vivit_tfx.models.trainer import export

QUANTIZATIONS = TFLITE_QUANTIZATIONS
FILE_STEMS = TFLITE_FILE_STEMS  # <stem>.tflite and <stem>.clip_config.json
CALIBRATION_CLIPS = 64  # int8: clips of the train split the activations' ranges come from


class ExportError(ValueError):
  """An export refused before anything is written; the message is one line."""


# --- the graph ---------------------------------------------------------------------------------
class FramewiseMaxPool3D(keras.layers.Layer):
  """MaxPool3D (pool = strides, VALID) from TFLite builtins: a 2D max-pool of every frame, then
  the max over each run of kt frames. TFLite has no MaxPool3D kernel (it would need the Flex
  delegate); the result is the same max over the same windows."""

  def __init__(self, pool_size: Sequence[int], **kwargs):
    super().__init__(**kwargs)
    self.pool_size = tuple(int(v) for v in pool_size)

  def call(self, x):  # [B, T, H, W, C] → [B, T // kt, H // kh, W // kw, C]
    kt, kh, kw = self.pool_size
    _, t, h, w, c = x.shape
    t = t // kt * kt
    frames = tf.nn.max_pool2d(tf.reshape(x[:, :t], [-1, h, w, c]), (kh, kw), (kh, kw),
                              'VALID')  # [B*t, h', w', C]
    runs = tf.reshape(frames, [-1, t // kt, kt, h // kh, w // kw, c])
    return tf.reduce_max(runs, axis=2)


class FramewiseConv3D(keras.layers.Layer):
  """A Conv3D (channels last, no dilation) as the sum over its kt temporal taps of 2D
  convolutions of every frame, with the same weights and 'same'/'valid' padding. TFLite runs
  CONV_3D with a slow reference kernel (about 0.6 s per 8 x 64 x 64 clip of the hybrid on one
  core) and CONV_2D with XNNPACK; the result differs by float rounding only."""

  def __init__(self, conv: keras.layers.Conv3D, **kwargs):
    super().__init__(**kwargs)
    if tuple(conv.dilation_rate) != (1, 1, 1) or conv.groups != 1 or (
        conv.data_format != 'channels_last'):
      raise ExportError(f'{conv.name}: a dilated, grouped or channels-first Conv3D has no '
                        'TFLite equivalent here')
    self.conv = conv

  def call(self, x):  # [B, T, H, W, C] → [B, T', H', W', C']
    conv = self.conv
    kt, st = conv.kernel_size[0], conv.strides[0]
    t = x.shape[1]
    if conv.padding == 'same':
      out_t = -(-t // st)
      pad = max((out_t - 1) * st + kt - t, 0)
      x = tf.pad(x, [[0, 0], [pad // 2, pad - pad // 2], [0, 0], [0, 0], [0, 0]])
    else:
      out_t = (t - kt) // st + 1
    kernel = tf.cast(conv.kernel, x.dtype)  # [kt, kh, kw, C, C']
    total = None
    for i in range(kt):
      frames = x[:, i:i + (out_t - 1) * st + 1:st]  # [B, T', H, W, C]
      y = tf.nn.conv2d(tf.reshape(frames, [-1, *frames.shape[2:]]), kernel[i],
                       strides=conv.strides[1:], padding=conv.padding.upper())  # [B*T', ...]
      total = y if total is None else total + y
    if conv.use_bias:
      total = total + tf.cast(conv.bias, x.dtype)
    if conv.activation is not None:
      total = conv.activation(total)
    return tf.reshape(total, [-1, out_t, *total.shape[1:]])


def _builtin_tokenizer(model: keras.Model) -> None:
  """Replaces the convolutional tokenizer's Conv3D and MaxPool3D layers (if any) by their
  TFLite-builtin equivalents (`FramewiseConv3D`, `FramewiseMaxPool3D`)."""
  tokenizer = getattr(model, 'tokenizer', None)
  if isinstance(getattr(tokenizer, 'stem', None), keras.layers.Conv3D):
    # A built Keras 3 layer refuses new sub-layers as attributes; nothing is trained here.
    object.__setattr__(tokenizer, 'stem', FramewiseConv3D(tokenizer.stem, name='stem_2d'))
  convs = getattr(tokenizer, 'convs', None) or []
  for i, conv in enumerate(convs):
    if isinstance(conv, keras.layers.Conv3D):
      convs[i] = FramewiseConv3D(conv, name=f'{conv.name}_2d')
  pools = getattr(tokenizer, 'pools', None) or []
  for i, pool in enumerate(pools):
    if isinstance(pool, keras.layers.MaxPool3D):
      if tuple(pool.strides) != tuple(pool.pool_size) or pool.padding != 'valid':
        raise ExportError(f'a MaxPool3D with strides {pool.strides} and padding {pool.padding} '
                          'has no TFLite equivalent here')
      pools[i] = FramewiseMaxPool3D(pool.pool_size, dtype=pool.dtype_policy, name=pool.name)


def _probe_jpeg(size: Tuple[int, int]) -> bytes:
  """A noise frame of `size` (H, W): every level of every channel, so the fit is well posed."""
  rng = np.random.default_rng(0)
  return tf.io.encode_jpeg(rng.integers(0, 256, (*size, 3), dtype=np.uint8), quality=95).numpy()


def pixel_affine(model_dir: str, clip: ModelClipConfig) -> Tuple[np.ndarray, np.ndarray]:
  """(scale [3], offset [3]): the model's Transform graph on frames of the clip config's size,
  as `pixels * scale + offset` of the decoded frames (0..255). Read off the graph by running
  it on a probe frame (`tft_layer`, the layer serving_default calls); refused (ExportError)
  when the graph is not such a map (a processor that resizes frames of this size)."""
  loaded = predict.saved_model(model_dir)
  layer = getattr(loaded, 'tft_layer', None)
  if layer is None:
    raise ExportError(f'{model_dir}: no Transform layer (tft_layer) in the SavedModel: not '
                      'exported by this project\'s Trainer')
  jpeg = _probe_jpeg(tuple(clip.frame_size))
  pixels = tf.io.decode_jpeg(jpeg, channels=3).numpy().astype(np.float64)  # [H, W, 3]
  record = tf.constant([[jpeg] * clip.stored_frames])  # [1, N]
  out = layer({features.FRAMES: record})[features.CLIP_XF].numpy()[0, 0].astype(np.float64)
  if out.shape != pixels.shape:
    raise ExportError(f'{model_dir}: the Transform graph makes {list(out.shape)} frames of '
                      f'{list(pixels.shape)} ones (it resizes them): not exportable to TFLite')
  scale, offset = np.zeros(3), np.zeros(3)
  for c in range(3):
    scale[c], offset[c] = np.polyfit(pixels[..., c].ravel(), out[..., c].ravel(), 1)
  error = np.abs(pixels * scale + offset - out).max()
  if error > 1e-4 * max(1.0, np.abs(out).max()):
    raise ExportError(f'{model_dir}: the Transform graph is not a per-channel affine map of '
                      f'the pixels (off by {error:.3g}): not exportable to TFLite')
  return scale.astype(np.float32), offset.astype(np.float32)


def clip_function(model_dir: str):
  """The frozen concrete function uint8 clips [B, T, H, W, 3] → {'probabilities': [B, P]}."""
  # local: a private TF module. Keras 3 variables trip the TF 2.16 converter ("missing
  # attribute 'value'", tensorflow/tensorflow#63987): the graph is converted with them frozen.
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  clip = clip_config_of(model_dir)
  scale, offset = pixel_affine(model_dir, clip)
  model = export.load_keras_model(model_dir)
  _builtin_tokenizer(model)
  n_classes = model.config.n_classes
  spec = tf.TensorSpec([None, clip.num_frames, *clip.frame_size, 3], tf.uint8,
                       name=model_scorer.CLIPS_INPUT)

  @tf.function(input_signature=[spec])
  def probabilities(clips):
    pixels = tf.cast(clips, tf.float32) * scale + offset  # [B, T, H, W, 3] normalised
    logits = model(pixels, training=False)  # [B, P]
    return {export.SERVING_OUTPUT: export._probabilities(logits, n_classes)}  # pylint: disable=protected-access

  return convert_to_constants.convert_variables_to_constants_v2(
      probabilities.get_concrete_function())


# --- calibration data --------------------------------------------------------------------------
def split_records(clips_dir: str, split: str = 'train') -> Tuple[List[List[bytes]], np.ndarray]:
  """([R][N] JPEG frame slots, labels [R]) of every record of `<clips_dir>/<split>/*.tfrecord`
  (the clips `vivit-tfx ingest` or `run` wrote)."""
  files = sorted(glob.glob(os.path.join(clips_dir, split, '*.tfrecord')))
  if not files:
    raise ExportError(f'{os.path.join(clips_dir, split)}: no *.tfrecord files (the clips '
                      '`vivit-tfx ingest` or `run` wrote: pass --clips-dir)')
  return read_records(files)


def read_records(files: Sequence[str], compression: str = ''
                 ) -> Tuple[List[List[bytes]], np.ndarray]:
  """([R][N] JPEG frame slots, labels [R]) of the clip tf.Examples in TFRecord `files`
  (compression 'GZIP': an ExampleGen's Examples artifact)."""
  records, labels = [], []
  for r in tf.data.TFRecordDataset(files, compression_type=compression):
    feature = tf.train.Example.FromString(r.numpy()).features.feature
    records.append(list(feature[features.FRAMES].bytes_list.value))
    labels.append(feature[features.LABEL].int64_list.value[0])
  return records, np.array(labels, int)


def calibration_clips(records: Sequence[Sequence[bytes]], clip: ModelClipConfig,
                      count: int = CALIBRATION_CLIPS) -> np.ndarray:
  """uint8 [count, T, H, W, 3]: the evaluation views of records spread evenly over the split
  (every view of a record, as serving scores it), decoded as serving decodes them."""
  needed = min(len(records), -(-count // clip.num_views))  # records whose K views make count
  chosen = np.unique(np.linspace(0, len(records) - 1, needed).round().astype(int))
  views = [v for i in chosen for v in model_scorer.record_views(records[i], clip)]
  return model_scorer.jpeg_pixels(views[:count], clip)


# --- conversion --------------------------------------------------------------------------------
# int8: 'norm-float' keeps the ops of every normalisation layer (GroupNorm, LayerNorm) in float
# and quantises the rest (measured: their variance and rsqrt lose the most in int8, and the
# hybrid's classes move with them); 'full' quantises every op TFLite has an int8 kernel for.
INT8_MODES = ('norm-float', 'full')


def normalization_nodes(function) -> List[str]:
  """Names of the TFLite ops of every normalisation layer of a clip function: every op in a
  name scope that computes moments (GroupNorm's and LayerNorm's `.../moments/...`)."""
  float_model = tf.lite.TFLiteConverter.from_concrete_functions([function]).convert()
  names = [t['name'] for t in tf.lite.Interpreter(model_content=float_model)
           .get_tensor_details()]
  scopes = {n.split('/moments/')[0] + '/' for n in names if '/moments/' in n}
  return [n for n in names if any(part.startswith(tuple(scopes)) for part in n.split(';'))]


def convert(function, quantize: str, calibration: Optional[np.ndarray] = None,
            int8: str = INT8_MODES[0]) -> bytes:
  """A frozen clip function (`clip_function`) → TFLite flatbuffer bytes."""
  if quantize not in QUANTIZATIONS:
    raise ExportError(f'--quantize {quantize}: one of {", ".join(QUANTIZATIONS)}')
  if int8 not in INT8_MODES:
    raise ExportError(f'--int8 {int8}: one of {", ".join(INT8_MODES)}')
  converter = tf.lite.TFLiteConverter.from_concrete_functions([function])
  if quantize != 'none':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  if quantize == 'int8':
    if calibration is None or not len(calibration):
      raise ExportError('int8 needs calibration clips of the train split')
    converter.representative_dataset = lambda: ([c[None]] for c in calibration)
    nodes = normalization_nodes(function) if int8 == 'norm-float' else []
    if nodes:  # selective quantisation: TFLite's debugger converts with these ops in float
      return tf.lite.experimental.QuantizationDebugger(
          converter=converter, debug_dataset=lambda: ([c[None]] for c in calibration[:1]),
          debug_options=tf.lite.experimental.QuantizationDebugOptions(
              denylisted_nodes=nodes)).get_nondebug_quantized_model()
  return converter.convert()


@dataclasses.dataclass
class Exported:
  quantize: str
  path: str  # the .tflite file
  clip_config: str  # its clip config beside it
  bytes: int
  drift_reference: str = ''  # the SavedModel's training split statistics beside it, if any

  def files(self) -> Tuple[str, str, str]:  # as drift_stats.tflite_model_files, '' if absent
    return self.path, self.clip_config, self.drift_reference


def _inside(path: str, folder: str) -> bool:
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def clip_config_record(model_dir: str, quantize: str, facts: Dict) -> ModelClipConfig:
  """The SavedModel's clip config plus where this TFLite model came from (lineage)."""
  source = model_dir if '://' in model_dir else os.path.abspath(model_dir)
  return clip_config_of(model_dir).with_provenance(tflite={
      'source_model': source, 'quantize': quantize,
      'input': f'{model_scorer.CLIPS_INPUT} uint8 [B, T, H, W, 3]',
      'output': f'{export.SERVING_OUTPUT} float32 [B, P]', **facts})


def write_model(path: str, quantize: str, content: bytes, record: ModelClipConfig) -> Exported:
  """Writes a TFLite model to `path` (<name>.tflite) and its clip config `record` beside it
  (<name>.clip_config.json); any URI tf.io.gfile writes."""
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(content)
  config = record.write(clip_config_path(path))
  return Exported(quantize, path, config, len(content))


def write_quantized(function, quantize: str, path: str, model_dir: str,
                    records: Sequence[Sequence[bytes]], calibration_count: int,
                    calibration_source: Dict, facts: Optional[Dict] = None,
                    int8: str = INT8_MODES[0]) -> Exported:
  """`function` (`clip_function` of the SavedModel `model_dir`) converted to `quantize` and
  written to `path` with its clip config; int8 calibrates on `records` of the train split,
  which `calibration_source` names in the clip config ({'clips_dir': …} or {'examples': …})."""
  calibration, facts = None, dict(facts or {})
  if quantize == 'int8':
    calibration = calibration_clips(records, clip_config_of(model_dir), calibration_count)
    facts['calibration'] = {**calibration_source, 'split': 'train', 'clips': len(calibration)}
    facts['int8'] = int8
  done = write_model(path, quantize, convert(function, quantize, calibration, int8),
                     clip_config_record(model_dir, quantize, facts))
  done.drift_reference = copy_drift_reference(model_dir, path)
  return done


def copy_drift_reference(model_dir: str, tflite_path: str) -> str:
  """The SavedModel's training split statistics (`drift_stats.REFERENCE_FILE`) copied beside
  the TFLite model, so `scan` and `watch` check drift with it too; its path, or '' when the
  SavedModel carries none. (Their `score` feature is the SavedModel's, which the TFLite
  model's follows within its quantisation's difference.)"""
  source, target = drift_stats.reference_path(model_dir), drift_stats.reference_path(tflite_path)
  if not tf.io.gfile.exists(source):
    return ''
  tf.io.gfile.copy(source, target, overwrite=True)
  return target


def export_tflite(model_dir: str, out_dir: str, quantizations: Sequence[str] = ('none',),
                  clips_dir: str = '', calibration_count: int = CALIBRATION_CLIPS,
                  overwrite: bool = False, log: Callable[[str], None] = lambda m: None,
                  int8: str = INT8_MODES[0]) -> List[Exported]:
  """Writes <out_dir>/<float32|float16|int8>.tflite and .clip_config.json for each of
  `quantizations` (int8: `int8` of INT8_MODES). Refused before anything is written
  (ExportError, OutputExists): an out_dir inside the pushed model's folder, a file of the
  user's in the way (unless `overwrite`), int8 without train clips."""
  if _inside(out_dir, model_dir):
    raise ExportError(f'--out-dir {out_dir} is inside the model {model_dir}: the pushed model '
                      'is left as it is (choose another folder)')
  unknown = [q for q in quantizations if q not in QUANTIZATIONS]
  if unknown:
    raise ExportError(f'--quantize {unknown[0]}: one of {", ".join(QUANTIZATIONS)}')
  clip_config_of(model_dir)  # a model of this project's, before anything is written
  records = split_records(clips_dir)[0] if 'int8' in quantizations else []
  folder = outputs.OutputFolder(out_dir, overwrite)
  files = [drift_stats.tflite_model_files(FILE_STEMS[q] + TFLITE_SUFFIX) for q in quantizations]
  paths = iter(folder.claim(*[name for names in files for name in names]))
  log(f'export: tracing {model_dir}')
  function = clip_function(model_dir)
  done = []
  try:
    for q, names in zip(quantizations, files):
      tflite, *_ = [next(paths) for _ in names]  # write_quantized writes the others beside it
      log(f'export: converting ({q})')
      done.append(write_quantized(function, q, tflite, model_dir, records, calibration_count,
                                  {'clips_dir': os.path.abspath(clips_dir)}, int8=int8))
  finally:  # what was written is the project's, even when a later conversion fails
    folder.done()
  return done


def default_out_dir(model_dir: str, root: str = 'output/tflite') -> str:
  """output/tflite/<model name>/<version>: a folder per pushed version, outside it."""
  version = os.path.basename(model_dir.rstrip('/'))
  name = os.path.basename(os.path.dirname(model_dir.rstrip('/'))) or 'model'
  return os.path.join(root, name, version)


def in_memory(model_dir: str, quantizations: Sequence[str], clips_dir: str,
              calibration_count: int = CALIBRATION_CLIPS, int8: str = INT8_MODES[0]
              ) -> Iterator[Tuple[str, model_scorer.TFLiteScorer]]:
  """(quantize, a scorer of the converted model) per quantisation, nothing written (the
  benchmark)."""
  clip = clip_config_of(model_dir)
  function = clip_function(model_dir)
  for q in quantizations:
    calibration = (calibration_clips(split_records(clips_dir)[0], clip, calibration_count)
                   if q == 'int8' else None)
    content = convert(function, q, calibration, int8)
    yield q, model_scorer.TFLiteScorer(f'<{FILE_STEMS[q]}>{TFLITE_SUFFIX}', clip, content)
