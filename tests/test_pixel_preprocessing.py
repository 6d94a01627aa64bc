"""pixel_preprocessing: processors' fields, the one resize-and-crop, the pipeline's choice."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.data import features
from vivit_tfx.data.clip_example import encode_jpeg
from vivit_tfx.data.frames import resize_and_crop, resize_and_crop_array, resized_shape
from vivit_tfx.models.checkpoints import pixel_preprocessing
from vivit_tfx.models.checkpoints.pixel_preprocessing import PixelPreprocessing
from vivit_tfx.models.trainer import preprocessing

# The hub files (hf-checkpoints.md §3), as written there.
VIVIT_HUB = {'image_processor_type': 'ViViTImageProcessor', 'do_resize': True,
             'size': {'shortest_edge': 224}, 'do_center_crop': True,
             'crop_size': {'height': 224, 'width': 224}, 'do_rescale': True,
             'rescale_factor': 0.00784313725490196, 'do_normalize': True,
             'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.5, 0.5, 0.5]}
VIT_IN21K = {'feature_extractor_type': 'ViTFeatureExtractor', 'do_resize': True, 'size': 224,
             'resample': 2, 'do_normalize': True, 'image_mean': [0.5, 0.5, 0.5],
             'image_std': [0.5, 0.5, 0.5]}
TIMESFORMER_HUB = {'image_processor_type': 'VideoMAEImageProcessor',
                   'size': {'shortest_edge': 224}, 'crop_size': {'height': 224, 'width': 224},
                   'image_mean': [0.45, 0.45, 0.45], 'image_std': [0.225, 0.225, 0.225]}


def test_processor_files_give_the_hub_ranges():
  vivit = PixelPreprocessing.from_processor_dict(VIVIT_HUB)
  assert (vivit.shortest_edge, vivit.crop_size, vivit.offset) == (224, (224, 224), True)
  np.testing.assert_allclose(vivit.value_range, (-3.0, 1.0), atol=1e-6)  # the hub quirk
  np.testing.assert_allclose(vivit.with_scenic_range().value_range, (-1.0, 1.0), atol=1e-6)
  vit = PixelPreprocessing.from_processor_dict(VIT_IN21K)  # legacy int size: a square resize
  assert (vit.shortest_edge, vit.resize_to, vit.crop_size) == (0, (224, 224), ())
  np.testing.assert_allclose(vit.value_range, (-1.0, 1.0), atol=1e-6)
  timesformer = PixelPreprocessing.from_processor_dict(TIMESFORMER_HUB)
  np.testing.assert_allclose(timesformer.value_range, (-2.0, (1 - 0.45) / 0.225), atol=1e-6)
  with pytest.raises(pixel_preprocessing.PreprocessorConfigError, match='unknown processor'):
    PixelPreprocessing.from_processor_dict({'image_processor_type': 'CLIPImageProcessor'})


def test_resize_and_crop_keeps_aspect_and_centre():
  frame = np.zeros((100, 200, 3), np.uint8)
  frame[:, 90:110] = 255  # a vertical bar in the centre
  out = resize_and_crop_array(frame, (50, 50))
  assert out.shape == (50, 50, 3)
  # Aspect kept: the bar stays 10 px wide (scale 0.5) and centred; no horizontal squash.
  bright = np.where(out[25, :, 0] > 127)[0]
  assert 8 <= len(bright) <= 12 and abs(bright.mean() - 24.5) < 2


def test_shortest_edge_follows_transformers_rule_then_crops_the_centre():
  # 68 x 160, shortest edge 32: transformers resizes to 32 x int(32 * 160 / 68) = 32 x 75,
  # then crops columns int((75 - 32) / 2) = 21 .. 52. A ramp along x shows where the crop is.
  ramp = np.tile(np.linspace(0, 255, 160).astype(np.uint8)[None, :, None], (68, 1, 3))
  new_h, new_w = resized_shape(68, 160, (32, 32), shortest_edge=32)
  assert (int(new_h), int(new_w)) == (32, 75)
  out = resize_and_crop(ramp, (32, 32), shortest_edge=32).numpy()
  full = resize_and_crop(ramp, (), resize_to=(32, 75)).numpy()
  np.testing.assert_array_equal(out, full[:, 21:53])
  assert np.all(out == np.round(out))  # resized frames are uint8 levels, as transformers'


@pytest.mark.parametrize('shape, crop, shortest_edge', [
    ((720, 1280, 3), (64, 64), 0),  # a 720p camera frame to the model's clip
    ((1, 1280, 720, 3), (64, 48), 0),  # portrait, a batch of one, a non-square crop
    ((2, 360, 640, 3), (224, 224), 256),  # transformers' shortest edge, then its crop
])
def test_the_crop_is_resized_alone_with_the_full_resizes_pixels(shape, crop, shortest_edge):
  """The antialiased resize computes only the crop's pixels (ScaleAndTranslate shifted by the
  crop's corner): the pixels of resizing the whole frame and cropping it, but for a value that
  falls on a half level and rounds the other way (measured: 2 of 12,288 on the 720p frame)."""
  frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  new_h, new_w = (int(v) for v in resized_shape(shape[-3], shape[-2], crop, shortest_edge))
  whole = np.clip(np.round(tf.image.resize(tf.cast(frame, tf.float32), (new_h, new_w),
                                           method='bilinear', antialias=True).numpy()), 0, 255)
  top, left = (new_h - crop[0]) // 2, (new_w - crop[1]) // 2
  diff = np.abs(resize_and_crop(frame, crop, shortest_edge=shortest_edge).numpy() -
                whole[..., top:top + crop[0], left:left + crop[1], :])
  assert diff.max() <= 1 and np.mean(diff > 0) < 1e-3, (diff.max(), np.mean(diff > 0))


def test_scaled_to_another_image_size():
  pixels = PixelPreprocessing(source='processor', shortest_edge=256, crop_size=(224, 224))
  small = pixels.for_image_size((112, 112))
  assert (small.shortest_edge, small.crop_size) == (128, (112, 112))


def test_choose_reads_a_hugging_face_directory(tmp_path):
  assert pixel_preprocessing.choose('auto').source == 'dataset'
  assert pixel_preprocessing.choose('auto', str(tmp_path / 'vit.npz')).source == 'scenic'
  (tmp_path / 'config.json').write_text(json.dumps({'model_type': 'vivit'}))
  no_file = pixel_preprocessing.choose('auto', str(tmp_path))  # transformers' ViViT defaults
  assert (no_file.shortest_edge, no_file.crop_size, no_file.offset) == (256, (224, 224), True)
  (tmp_path / 'preprocessor_config.json').write_text(json.dumps(VIVIT_HUB))
  hub = pixel_preprocessing.choose('auto', str(tmp_path))
  assert hub.origin.endswith('preprocessor_config.json') and hub.value_range[0] == -3.0
  assert pixel_preprocessing.choose('scenic', str(tmp_path)).value_range == (-1.0, 1.0)
  assert PixelPreprocessing.from_dict(json.loads(json.dumps(hub.to_dict()))) == hub
  with pytest.raises(ValueError, match='Hugging Face model directory'):
    pixel_preprocessing.choose('processor', '')


def test_transform_applies_a_checkpoints_processor():
  """preprocessing_fn with a processor: no analyzers, the processor's pixels of each frame
  (resized from the stored 40 x 48 and centre-cropped to 32 x 32)."""
  rng = np.random.RandomState(0)
  frames = rng.randint(0, 256, (2, 40, 48, 3)).astype(np.uint8)
  jpegs = [encode_jpeg(f, 95) for f in frames]
  pixels = PixelPreprocessing.from_processor_dict(TIMESFORMER_HUB).for_image_size((32, 32))
  out = preprocessing.preprocessing_fn(
      {features.FRAMES: tf.constant([jpegs]), features.LABEL: tf.constant([[1]])},
      {'image_size': [32, 32], 'num_frames': 2, 'pixels': pixels.to_dict()})
  decoded = tf.stack([tf.io.decode_jpeg(j) for j in jpegs])  # [2, 40, 48, 3]
  expected = pixel_preprocessing.preprocess_frames(decoded[None], pixels).numpy()
  assert out[features.CLIP_XF].shape == (1, 2, 32, 32, 3)
  np.testing.assert_allclose(out[features.CLIP_XF].numpy(), expected, atol=1e-5)
  assert expected.min() < -1.5  # TimeSformer's 0.45 / 0.225, not the dataset's statistics


FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf')


@pytest.mark.parametrize('family', ['vit', 'vivit', 'videomae', 'timesformer'])
def test_parity_with_transformers_processor(family):
  """The clip that needs resize + crop (40 x 60 → shortest edge 32 → 32 x 48 → centre 32 x 32),
  as the pipeline preprocesses it for this checkpoint, against the frames and pixel values
  transformers' processor produced: within one uint8 level of resize difference."""
  real = np.load(os.path.join(FIXTURES, 'clips.npz'))['real']  # [4, 40, 60, 3] uint8
  expected = np.load(os.path.join(FIXTURES, family, 'expected.npz'))
  hf_frames = expected['frames_real'].reshape(real.shape[0], 32, 32, 3).astype(np.float32)
  pixels = pixel_preprocessing.choose('auto', os.path.join(FIXTURES, family))
  assert pixels.source == 'processor'
  frames = pixels.resize_and_crop(real).numpy()  # [4, 32, 32, 3]
  assert np.abs(frames - hf_frames).max() <= 1
  level = pixels.rescale_factor / min(pixels.std)  # one uint8 level, normalised
  np.testing.assert_allclose(pixels(real).numpy(), pixels.normalise(hf_frames).numpy(),
                             atol=level + 1e-6)
  np.testing.assert_allclose(pixels.normalise(hf_frames).numpy(),
                             _processor_pixels(family, hf_frames), atol=1e-5)


def _processor_pixels(family, frames):
  """The processor's pixel values of its own frames, from its file and transformers' formula
  (rescale, minus 1 for ViViT's offset, mean/std), independent of our parsing."""
  with open(os.path.join(FIXTURES, family, 'preprocessor_config.json')) as f:
    processor = json.load(f)
  x = frames * processor['rescale_factor'] - (1.0 if family == 'vivit' else 0.0)
  return (x - np.array(processor['image_mean'])) / np.array(processor['image_std'])
