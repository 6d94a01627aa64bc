"""How a frame's pixels become the model's input: resize, centre crop, rescale, normalise.

The one resize-and-crop of the project (Transform, the serving signature's frame conforming,
`watch`, the synthetic masks) and the one normalisation, described by `PixelPreprocessing`:

* a Hugging Face checkpoint's `preprocessor_config.json` (ViT, ViViT, VideoMAE, TimeSformer
  image/video processors), applied as transformers' processor applies it: resize (the shortest
  edge to `shortest_edge`, the long one to `int(S * long / short)`, or exactly to `resize_to`)
  with antialiased bilinear rounded to uint8 levels, centre crop (top/left
  `int((H - h) / 2)`), rescale (`x * rescale_factor`, minus 1 with `offset`), then
  `(x - mean) / std`. On frames that need resizing this is within one uint8 level of the
  processor's torchvision resize (`tests/test_pixel_preprocessing.py`);
* no checkpoint: the dataset's own statistics (`x / 255` standardised per channel with the
  train split's mean and variance, computed by Transform);
* an image ViT `.npz` (google-research/vision_transformer) or `--pixels scenic`: `[-1, 1]`.

ViViT hub quirk: `google/vivit-b-16x2-kinetics400`'s `preprocessor_config.json` asks for
`rescale_factor = 1/127.5` with the processor's `offset` (x/127.5 - 1, already `[-1, 1]`) *and*
mean/std 0.5 on top, so transformers feeds the model `[-3, 1]`, while Scenic trained (and HF
converted and checked) the weights on `[-1, 1]`. `from_preprocessor_config` reproduces the
processor (HF parity); `scenic_range=True` (`vivit-tfx run --pixels scenic`) gives `[-1, 1]`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from vivit_tfx.data.frames import resize_and_crop

PROCESSOR_FILE = 'preprocessor_config.json'
IMAGENET_STANDARD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET_DEFAULT = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# transformers' defaults per processor family, used for keys a file leaves out:
# (size is shortest-edge, resize_to, crop, rescale_factor, offset, (mean, std)).
_FAMILY_DEFAULTS = {
    'vivit': dict(shortest_edge=256, crop_size=(224, 224), rescale_factor=1 / 127.5,
                  offset=True, stats=IMAGENET_STANDARD),
    'videomae': dict(shortest_edge=224, crop_size=(224, 224), rescale_factor=1 / 255,
                     offset=False, stats=IMAGENET_STANDARD),
    'timesformer': dict(shortest_edge=224, crop_size=(224, 224), rescale_factor=1 / 255,
                        offset=False, stats=IMAGENET_DEFAULT),
    'vit': dict(resize_to=(224, 224), rescale_factor=1 / 255, offset=False,
                stats=IMAGENET_STANDARD),
}
SOURCES = ('dataset', 'scenic', 'processor')


class PreprocessorConfigError(ValueError):
  """A preprocessor_config.json this module cannot apply; the message is one line."""


@dataclasses.dataclass(frozen=True)
class PixelPreprocessing:
  """uint8 frames [..., H, W, 3] → the model's float pixels [..., h, w, 3].

  source: 'dataset' (per-channel mean/std of the train split, computed by Transform),
  'scenic' (x/127.5 - 1, the `.npz` image ViTs' and Scenic ViViT's [-1, 1]) or 'processor'
  (a checkpoint's preprocessor_config.json, `origin` names it).
  """
  source: str = 'dataset'
  origin: str = ''                        # the preprocessor_config.json read, if any
  processor_class: str = ''               # as the file names it
  shortest_edge: int = 0                  # resize the shorter side to this (aspect kept) ...
  resize_to: Tuple[int, ...] = ()         # ... or exactly to (H, W); neither: cover the crop
  crop_size: Tuple[int, ...] = ()         # centre crop (H, W); () = the model's image size
  rescale_factor: float = 1 / 255
  offset: bool = False                    # x * rescale_factor - 1 (ViViT processors)
  mean: Tuple[float, ...] = (0.0, 0.0, 0.0)  # after rescale; ignored for source 'dataset'
  std: Tuple[float, ...] = (1.0, 1.0, 1.0)

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f'pixel source {self.source!r} is not one of {SOURCES}')
    for name in ('resize_to', 'crop_size', 'mean', 'std'):
      object.__setattr__(self, name, tuple(getattr(self, name)))

  # --- constructors ---------------------------------------------------------------------------
  @classmethod
  def dataset(cls) -> 'PixelPreprocessing':
    return cls()

  @classmethod
  def scenic(cls) -> 'PixelPreprocessing':
    """[-1, 1]: what the `.npz` image ViTs and Scenic's ViViT were trained on."""
    return cls(source='scenic', rescale_factor=1 / 127.5, offset=True)

  @classmethod
  def from_preprocessor_config(cls, path: str, scenic_range: bool = False
                               ) -> 'PixelPreprocessing':
    """Reads a checkpoint's preprocessor_config.json (a file, or the directory holding it, any
    tf.io.gfile URI). `scenic_range`: keep its resize and crop but feed [-1, 1] (see the ViViT
    hub quirk in the module docstring)."""
    if tf.io.gfile.isdir(path):
      path = os.path.join(path, PROCESSOR_FILE)
    if not tf.io.gfile.exists(path):
      raise PreprocessorConfigError(f'{path}: no such file (a Hugging Face model directory '
                                    f'holds its processor in {PROCESSOR_FILE})')
    try:
      with tf.io.gfile.GFile(path) as f:
        data = json.load(f)
    except ValueError as e:
      raise PreprocessorConfigError(f'{path}: not JSON ({e})') from None
    pixels = cls.from_processor_dict(data, origin=path)
    return pixels.with_scenic_range() if scenic_range else pixels

  def with_scenic_range(self) -> 'PixelPreprocessing':
    """The same resize and crop, then x/127.5 - 1 ([-1, 1]) with no mean/std."""
    return dataclasses.replace(self, rescale_factor=1 / 127.5, offset=True, mean=(0.0,) * 3,
                               std=(1.0,) * 3)

  @classmethod
  def from_processor_dict(cls, data: Dict[str, Any], origin: str = '') -> 'PixelPreprocessing':
    """A processor's fields (preprocessor_config.json) with its family's defaults."""
    name = str(data.get('image_processor_type') or data.get('video_processor_type') or
               data.get('feature_extractor_type') or data.get('processor_class') or '')
    family = _family(name)
    if family is None:
      raise PreprocessorConfigError(f'{origin or "processor"}: unknown processor class '
                                    f'{name!r} (known: ViT, ViViT, VideoMAE, TimeSformer)')
    defaults = _FAMILY_DEFAULTS[family]
    square = family == 'vit'  # transformers' default_to_square for an int `size`
    shortest, resize_to = defaults.get('shortest_edge', 0), defaults.get('resize_to', ())
    if 'size' in data:
      shortest, resize_to = _size(data['size'], square, origin)
    if not data.get('do_resize', True):
      shortest, resize_to = 0, ()
    crop = defaults.get('crop_size', ())
    if 'crop_size' in data:
      crop = _hw(data['crop_size'], origin, 'crop_size')
    if not data.get('do_center_crop', family != 'vit'):
      crop = ()
    scale = float(data.get('rescale_factor', defaults['rescale_factor']))
    if not data.get('do_rescale', True):
      scale = 1.0
    offset = bool(data.get('offset', defaults['offset'])) and data.get('do_rescale', True)
    mean, std = defaults['stats']
    if data.get('do_normalize', True):
      mean, std = _channels(data.get('image_mean', mean)), _channels(data.get('image_std', std))
    else:
      mean, std = (0.0,) * 3, (1.0,) * 3
    return cls(source='processor', origin=origin, processor_class=name,
               shortest_edge=shortest, resize_to=resize_to, crop_size=crop,
               rescale_factor=scale, offset=offset, mean=mean, std=std)

  # --- serialisation (clip config, Transform's custom_config, lineage) -------------------------
  def to_dict(self) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, data: Optional[Dict[str, Any]]) -> 'PixelPreprocessing':
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in (data or {}).items() if k in names})

  def describe(self) -> str:
    """One line: what the model is fed."""
    if self.source == 'dataset':
      return 'x/255 standardised with the train split\'s per-channel mean/std'
    resize = (f'shortest edge {self.shortest_edge}' if self.shortest_edge else
              f'to {self.resize_to[0]}x{self.resize_to[1]}' if self.resize_to else 'to cover')
    crop = f', centre crop {self.crop_size[0]}x{self.crop_size[1]}' if self.crop_size else ''
    low, high = self.value_range
    return (f'resize {resize}{crop}; x*{self.rescale_factor:.6g}{" - 1" if self.offset else ""}'
            f', mean {list(self.mean)} std {list(self.std)}: [{low:.3g}, {high:.3g}]'
            f'{" (" + self.origin + ")" if self.origin else ""}')

  @property
  def value_range(self) -> Tuple[float, float]:
    """(min, max) over channels of the model's input for uint8 frames (not for 'dataset')."""
    lows = [(0.0 - (1.0 if self.offset else 0.0) - m) / s for m, s in zip(self.mean, self.std)]
    highs = [(255.0 * self.rescale_factor - (1.0 if self.offset else 0.0) - m) / s
             for m, s in zip(self.mean, self.std)]
    return min(lows), max(highs)

  def for_image_size(self, image_size: Sequence[int]) -> 'PixelPreprocessing':
    """This preprocessing producing `image_size` (H, W) frames: the crop becomes that size;
    a shortest-edge or exact resize is scaled by the same ratio (a 256 → 224 recipe becomes
    256/224 of the new size)."""
    size = tuple(int(v) for v in image_size)
    final = self.crop_size or self.resize_to
    if not final or tuple(final) == size:
      return dataclasses.replace(self, crop_size=size)
    ratio = min(size[0] / final[0], size[1] / final[1])
    return dataclasses.replace(
        self, crop_size=size,
        shortest_edge=int(round(self.shortest_edge * ratio)) if self.shortest_edge else 0,
        resize_to=(int(round(self.resize_to[0] * size[0] / final[0])),
                   int(round(self.resize_to[1] * size[1] / final[1]))) if self.resize_to else ())

  # --- the TF implementation ------------------------------------------------------------------
  def resize_and_crop(self, images: tf.Tensor) -> tf.Tensor:
    """uint8 or float 0..255 [H, W, C] or [N, H, W, C] → float32 0..255 [.., h, w, C] (crop)."""
    return resize_and_crop(images, self.crop_size, self.shortest_edge, self.resize_to)

  def rescale(self, pixels: tf.Tensor) -> tf.Tensor:
    """float 0..255 → x * rescale_factor (- 1 with offset)."""
    pixels = tf.cast(pixels, tf.float32) * self.rescale_factor
    return pixels - 1.0 if self.offset else pixels

  def normalise(self, pixels: tf.Tensor, mean=None, std=None) -> tf.Tensor:
    """float 0..255 [..., 3] → the model's input; `mean`/`std` [3] (in rescaled units) replace
    the fixed ones, as Transform passes the dataset's statistics."""
    mean = tf.constant(self.mean, tf.float32) if mean is None else mean
    std = tf.constant(self.std, tf.float32) if std is None else std
    return (self.rescale(pixels) - mean) / std

  def __call__(self, frames: tf.Tensor) -> tf.Tensor:
    """Frames [.., H, W, 3] (uint8) → the model's pixels [.., h, w, 3]; not for 'dataset'
    (its statistics come from Transform)."""
    if self.source == 'dataset':
      raise ValueError("source 'dataset' needs the train split's statistics: use normalise()")
    return self.normalise(self.resize_and_crop(frames))


def _family(name: str) -> Optional[str]:
  lower = name.lower()
  for family in ('vivit', 'videomae', 'timesformer', 'vit'):
    if family in lower:
      return family
  return None


def _hw(value, origin: str, key: str) -> Tuple[int, int]:
  if isinstance(value, int):
    return value, value
  if isinstance(value, dict) and 'height' in value and 'width' in value:
    return int(value['height']), int(value['width'])
  raise PreprocessorConfigError(f'{origin or "processor"}: {key} {value!r} is not an int or '
                                '{"height", "width"}')


def _size(value, square: bool, origin: str) -> Tuple[int, Tuple[int, ...]]:
  """transformers' `size` → (shortest_edge, resize_to)."""
  if isinstance(value, int):
    return (0, (value, value)) if square else (value, ())
  if isinstance(value, dict) and set(value) == {'shortest_edge'}:
    return int(value['shortest_edge']), ()
  if isinstance(value, (list, tuple)) and len(value) == 2:
    return 0, (int(value[0]), int(value[1]))
  return 0, _hw(value, origin, 'size')


def _channels(value) -> Tuple[float, float, float]:
  values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value] * 3)]
  return tuple(values) if len(values) == 3 else tuple(values[:1] * 3)


CHOICES = ('auto', 'dataset', 'scenic', 'processor')


def is_hf_directory(path: str) -> bool:
  """A Hugging Face model directory: a folder holding config.json."""
  return bool(path) and tf.io.gfile.isdir(path) and tf.io.gfile.exists(
      os.path.join(path, 'config.json'))


def choose(choice: str, init_checkpoint: str = '') -> PixelPreprocessing:
  """The pipeline's preprocessing from `--pixels` and `--init-checkpoint`.

  auto: a Hugging Face directory's processor (its preprocessor_config.json, else its family's
  transformers defaults from config.json's model_type), an `.npz` image ViT's [-1, 1], else
  the dataset's statistics. processor: the directory's processor (required). scenic: [-1, 1]
  (with a directory: its resize and crop). dataset: the dataset's statistics. Any other value
  is a preprocessor_config.json (or a directory holding one) to apply.
  """
  hf = is_hf_directory(init_checkpoint)
  if choice == 'dataset':
    return PixelPreprocessing.dataset()
  if choice == 'scenic' and not hf:
    return PixelPreprocessing.scenic()
  if choice in ('auto', 'processor', 'scenic') and hf:
    return _directory_processor(init_checkpoint, scenic_range=choice == 'scenic')
  if choice == 'processor':
    raise PreprocessorConfigError(f'--pixels processor needs --init-checkpoint to be a Hugging '
                                  f'Face model directory, got {init_checkpoint or "none"!r}')
  if choice == 'auto':
    return PixelPreprocessing.scenic() if init_checkpoint else PixelPreprocessing.dataset()
  return PixelPreprocessing.from_preprocessor_config(choice)


def _directory_processor(directory: str, scenic_range: bool) -> PixelPreprocessing:
  if tf.io.gfile.exists(os.path.join(directory, PROCESSOR_FILE)):
    return PixelPreprocessing.from_preprocessor_config(directory, scenic_range)
  config_path = os.path.join(directory, 'config.json')
  with tf.io.gfile.GFile(config_path) as f:
    model_type = str(json.load(f).get('model_type', ''))
  pixels = PixelPreprocessing.from_processor_dict({'image_processor_type': model_type},
                                                  origin=f'{config_path} (model_type defaults)')
  return pixels.with_scenic_range() if scenic_range else pixels


def preprocess_frames(frames: tf.Tensor, pixels: PixelPreprocessing) -> tf.Tensor:
  """Clips uint8 [B, T, H, W, 3] (any H x W) → the model's float32 [B, T, h, w, 3]."""
  shape = tf.shape(frames)
  out = pixels(tf.reshape(frames, tf.concat([[-1], shape[2:]], 0)))  # [B*T, h, w, 3]
  return tf.reshape(out, tf.concat([shape[:2], tf.shape(out)[1:]], 0))
