"""Hugging Face checkpoints: every family loaded exactly against transformers' own outputs
(tests/fixtures/hf, made by scripts/make_hf_fixtures.py), heads, conflicts, bad directories."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx.models.checkpoints import hf_checkpoint, pixel_preprocessing
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.checkpoints.vit_checkpoint import CheckpointMismatch
from vivit_tfx.models.network.vivit_config import ViViTConfig

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf')
LABELS = ['dancing', 'fighting', 'hugging']


def fixture(family):
  return os.path.join(FIXTURES, family)


def expected(family):
  with np.load(os.path.join(fixture(family), 'expected.npz')) as data:
    return {k: data[k] for k in data.files}


def model_for(path, classes=None, **changes):
  spec = hf_checkpoint.load_hf_config(path)
  n_classes = len(classes) if classes else max(spec.num_labels, 2)
  config = ViViTConfig(**{**spec.architecture, 'n_classes': n_classes, 'init_checkpoint': path,
                          **changes})
  return initialised_vivit(config, classes=classes)


def static_clip(images):  # image ViT: [B, H, W, 3] → a 2-frame static clip [B, 2, H, W, 3]
  return np.repeat(np.asarray(images, np.float32)[:, None], 2, axis=1)


@pytest.mark.parametrize('family', ['vivit', 'videomae', 'timesformer', 'vit-classification'])
def test_logits_equal_transformers(family):
  """From already-normalised pixels and from the processor's pixels of both clips: 2e-5
  (ViViT's tanh GELU alone moves these logits by ~2.5e-4)."""
  model, e = model_for(fixture(family)), expected(family)
  assert model.init_source['hf_head'] == 'kept'
  image = family.startswith('vit-')
  pixels = e['pixels'].astype(np.float32)
  np.testing.assert_allclose(model(static_clip(pixels) if image else pixels),
                             e['logits_pixels'], atol=2e-5)
  processor = hf_checkpoint.load_hf_config(fixture(family)).preprocessing
  with np.load(os.path.join(FIXTURES, 'clips.npz')) as clips:
    random = clips['random']  # [T, 32, 32, 3]: resize and crop are identities
  for name, frames in (('random', random), ('real', e['frames_real'])):
    frames = frames if image else frames.reshape((1,) + frames.shape[-4:])
    clip = processor.normalise(tf.cast(frames, tf.float32)).numpy()
    np.testing.assert_allclose(model(static_clip(clip) if image else clip), e[f'logits_{name}'],
                               atol=2e-5, err_msg=name)


@pytest.mark.parametrize('family', ['vit', 'videomae-pretraining'])
def test_encoder_tokens_equal_transformers(family):
  """ViTModel (pooler dropped) and VideoMAE's pre-training encoder: last_hidden_state."""
  model, e = model_for(fixture(family)), expected(family)
  pixels = e['pixels'].astype(np.float32)
  clip = static_clip(pixels) if family == 'vit' else pixels
  tokens = model.encoder(model.tokenizer(clip)).numpy()
  np.testing.assert_allclose(tokens, e['hidden_pixels'], atol=5e-5)
  report = hf_checkpoint.load(model, fixture(family))
  assert report.head.startswith('new') and report.missing == ['vivit/head/bias',
                                                              'vivit/head/kernel']
  reason = 'pre-logits' if family == 'vit' else 'decoder'
  assert report.ignored and all(reason in why for why in report.ignored.values())


def test_pretraining_encoder_fine_tuned_with_fc_norm_drops_the_final_norm():
  model = model_for(fixture('videomae-pretraining'), classifier='gap_fc_norm')
  report = hf_checkpoint.load(model, fixture('videomae-pretraining'))
  assert 'videomae.layernorm.weight' in report.ignored
  assert 'vivit/fc_norm/gamma' in report.missing  # fresh, as transformers fine-tunes


def test_heads_kept_permuted_binary_or_replaced(tmp_path):
  path = fixture('vivit')
  logits = expected('vivit')['logits_pixels'][0]  # [3]
  pixels = expected('vivit')['pixels'].astype(np.float32)
  permuted = model_for(path, classes=['hugging', 'dancing', 'fighting'])
  assert 'reordered' in permuted.init_source['hf_head']
  np.testing.assert_allclose(permuted(pixels)[0], logits[[2, 0, 1]], atol=2e-5)
  other = model_for(path, classes=['calm', 'violent'])
  assert other.init_source['hf_head'].startswith('new') and not other.head.kernel.numpy().any()
  # A 2-label checkpoint: its logits are the first two rows' (same features, fewer rows).
  two = str(tmp_path / 'two-labels')
  shutil.copytree(path, two)
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  weights = load_file(os.path.join(two, 'model.safetensors'))
  weights['classifier.weight'] = weights['classifier.weight'][:2]
  weights['classifier.bias'] = weights['classifier.bias'][:2]
  save_file(weights, os.path.join(two, 'model.safetensors'))
  with open(os.path.join(two, 'config.json')) as f:
    config = json.load(f)
  config['id2label'] = {'0': 'calm', '1': 'violent'}
  with open(os.path.join(two, 'config.json'), 'w') as f:
    json.dump(config, f)
  binary = model_for(two, classes=['calm', 'violent'])
  assert 'binary logit' in binary.init_source['hf_head']
  np.testing.assert_allclose(binary(pixels)[0, 0], logits[1] - logits[0], atol=2e-5)


def test_conflicting_flag_is_one_line():
  with pytest.raises(CheckpointMismatch, match=r"activation='gelu' conflicts with the vivit ") as e:
    model_for(fixture('vivit'), activation='gelu')
  assert '\n' not in str(e.value)
  # An image ViT decides its patch, not the clip length or variant.
  model = model_for(fixture('vit'), num_frames=4, variant='factorised_encoder')
  assert model.init_source['hf_family'] == 'vit'


def test_bad_directories_are_one_line(tmp_path):
  with pytest.raises(CheckpointMismatch, match='no config.json'):
    hf_checkpoint.load_hf_config(str(tmp_path))
  shutil.copy(os.path.join(fixture('vivit'), 'config.json'), tmp_path)
  (tmp_path / 'pytorch_model.bin').write_bytes(b'pickle')
  with pytest.raises(CheckpointMismatch, match='pytorch_model.bin is a pickled torch file: '
                                               'convert it to safetensors'):
    hf_checkpoint.read_weights(str(tmp_path))


def test_reads_through_tf_io_gfile():
  remote = 'ram://hf_checkpoint_test/videomae'
  tf.io.gfile.makedirs(remote)
  for name in ('config.json', 'model.safetensors', 'preprocessor_config.json'):
    tf.io.gfile.copy(os.path.join(fixture('videomae'), name), f'{remote}/{name}', overwrite=True)
  assert pixel_preprocessing.is_hf_directory(remote)
  model = model_for(remote)
  e = expected('videomae')
  np.testing.assert_allclose(model(e['pixels'].astype(np.float32)), e['logits_pixels'],
                             atol=2e-5)
  assert len(model.init_source['init_checkpoint_sha256']) == 64


def test_the_run_header_says_what_a_checkpoint_decided(tmp_path):
  """An image ViT makes clips of 2 frames and replaces the hybrid's tokenizer: the header said
  'overridden: nothing' (issue 29, item 5)."""
  from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top
  summary = configs.PipelineConfig(output_root=str(tmp_path),
                                   init_checkpoint=os.path.join(FIXTURES, 'vit')).model_summary()
  decided = next(line for line in summary.splitlines() if 'decided:' in line)
  assert 'num_frames 8 → 2' in decided and 'tokenizer conv → tubelet' in decided
  assert 'decided' not in configs.PipelineConfig(output_root=str(tmp_path)).model_summary()
