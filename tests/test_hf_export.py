"""`vivit-tfx checkpoint inspect|export`: the exported SavedModel of each fixture gives
transformers' logits from uint8 frames (its own preprocessing) and from normalised pixels."""
import os

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx import cli
from vivit_tfx.models.checkpoints import pixel_preprocessing
from vivit_tfx.models.trainer import export as model_export

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf')


def load(family):
  with np.load(os.path.join(FIXTURES, family, 'expected.npz')) as data:
    expected = {k: data[k] for k in data.files}
  with np.load(os.path.join(FIXTURES, 'clips.npz')) as data:
    return expected, data['random'], data['real']


@pytest.mark.parametrize('family', ['vivit', 'videomae', 'timesformer', 'vit-classification'])
def test_export_gives_transformers_logits(family, tmp_path, capsys):
  out = str(tmp_path / 'exported')
  assert cli.main(['checkpoint', 'export', os.path.join(FIXTURES, family), '--output', out]) == 0
  assert 'signatures serving_default, pixels' in capsys.readouterr().out
  loaded = tf.saved_model.load(out)
  serve, pixels = loaded.signatures['serving_default'], loaded.signatures['pixels']
  e, random, real = load(family)
  if family.startswith('vit'):  # image ViT at T = 2: a static clip per image
    static = lambda x: np.repeat(np.asarray(x)[:, None], 2, axis=1)
    inputs = static(e['pixels'].astype(np.float32))
    clips = {'random': static(random), 'real': static(real)}
  else:
    inputs = e['pixels'].astype(np.float32)
    clips = {'random': random[None], 'real': real[None]}
  np.testing.assert_allclose(pixels(pixel_values=inputs)['logits'], e['logits_pixels'],
                             atol=2e-5)
  out_random = serve(frames=tf.constant(clips['random']))
  np.testing.assert_allclose(out_random['logits'], e['logits_random'], atol=2e-5)
  np.testing.assert_allclose(np.sum(out_random['probabilities'], -1), 1.0, atol=1e-6)
  # 40x60 frames, resized and cropped in the graph: within one uint8 level of the processor's
  # (TF's antialiased bilinear vs PIL's) on ~18 % of the pixels, which moves these tiny
  # models' logits (weights N(0, 0.2)) by up to ~2.3e-2.
  processor = pixel_preprocessing.PixelPreprocessing.from_preprocessor_config(
      os.path.join(FIXTURES, family))
  frames = processor.resize_and_crop(tf.constant(real)).numpy()
  assert np.abs(frames - e['frames_real'].reshape(frames.shape)).max() <= 1
  np.testing.assert_allclose(serve(frames=tf.constant(clips['real']))['logits'],
                             e['logits_real'], atol=5e-2)
  assert model_export.load_keras_model(out).config.num_frames == inputs.shape[1]


def test_inspect_lists_used_ignored_and_missing(capsys):
  assert cli.main(['checkpoint', 'inspect', os.path.join(FIXTURES, 'vit')]) == 0
  out = capsys.readouterr().out
  assert 'family: vit (ViTModel)' in out and 'tubelet_size=(2, 8, 8)' in out
  assert 'ignored: 2 (pooler.dense.bias, ...): ViT pre-logits' in out
  assert 'missing (left as initialised): 2 (vivit/head/bias, vivit/head/kernel)' in out
  assert 'resize to 32x32' in out


def test_export_errors_are_one_line(tmp_path, capsys):
  existing = tmp_path / 'mine'
  existing.mkdir()
  assert cli.main(['checkpoint', 'export', os.path.join(FIXTURES, 'vivit'), '--output',
                   str(existing)]) == 1
  assert 'already exists' in capsys.readouterr().err
  assert cli.main(['checkpoint', 'export', os.path.join(FIXTURES, 'vivit'), '--output',
                   str(tmp_path / 'new'), '--num-frames', '8']) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'num_frames=8 conflicts with the vivit checkpoint' in err
  assert cli.main(['checkpoint', 'export', os.path.join(FIXTURES, 'vit'), '--output',
                   str(tmp_path / 'new')]) == 1
  assert 'without a classification head' in capsys.readouterr().err
  assert not (tmp_path / 'new').exists()


def test_export_refuses_an_output_inside_the_checkpoint(tmp_path, capsys):
  import shutil  # pylint: disable=g-import-not-at-top
  mine = tmp_path / 'vivit'
  shutil.copytree(os.path.join(FIXTURES, 'vivit'), mine)
  before = sorted(os.listdir(mine))
  for output in (mine / 'inside', mine / 'a' / 'b'):
    assert cli.main(['checkpoint', 'export', str(mine), '--output', str(output)]) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'--output {output} is {mine} or nested with it' in err
  assert sorted(os.listdir(mine)) == before


def test_a_position_table_that_disagrees_with_config_json_is_named_as_the_file_names_it(
    tmp_path, capsys):
  import json  # pylint: disable=g-import-not-at-top
  import shutil  # pylint: disable=g-import-not-at-top
  # A deep folder: a message cut at 300 characters lost the file it names (CI's worker paths).
  bad = tmp_path / ('deep_' * 20) / 'vivit'
  shutil.copytree(os.path.join(FIXTURES, 'vivit'), bad)
  config = json.loads((bad / 'config.json').read_text())
  (bad / 'config.json').write_text(json.dumps({**config, 'num_frames': 8}))
  assert cli.main(['checkpoint', 'inspect', str(bad)]) == 1
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and 'posembed_input' not in err, err
  assert ('vivit.embeddings.position_embeddings has shape (1, 33, 32), the model needs '
          '(1, 65, 32) ') in err
  assert f'its length follows num_frames, image_size and tubelet_size in {bad}/config.json' in err
