"""Issue 29 items 1 and 2: checkpoints are loaded before any work. A broken --init-checkpoint
(only pytorch_model.bin, a truncated model.safetensors, a config.json that disagrees with the
weights) stops `run` in one line before ingest, as `checkpoint inspect` refuses it; a
pre-training checkpoint brings its own encoder and decoder settings."""
import json
import os
import shutil

import pytest

from vivit_tfx import cli
from vivit_tfx.models.checkpoints import checkpoint_checks
from vivit_tfx.models.checkpoints.vit_checkpoint import CheckpointMismatch
from vivit_tfx.pipeline import configs

HF = os.path.join(os.path.dirname(__file__), 'fixtures', 'hf')


def _broken(tmp_path, how: str) -> str:
  """The vivit fixture with its weights broken `how`."""
  path = tmp_path / how
  shutil.copytree(os.path.join(HF, 'vivit'), path)
  weights = path / 'model.safetensors'
  if how == 'torch_only':
    weights.rename(path / 'pytorch_model.bin')
  elif how == 'truncated':
    weights.write_bytes(weights.read_bytes()[:len(weights.read_bytes()) // 2])
  else:  # config.json says wider MLPs than the weights hold
    config = json.loads((path / 'config.json').read_text())
    (path / 'config.json').write_text(json.dumps({**config, 'intermediate_size': 48}))
  return str(path)


@pytest.mark.parametrize('how,reason', [
    ('torch_only', 'no model.safetensors (pytorch_model.bin is a pickled torch file'),
    ('truncated', 'not a safetensors file'),
    ('disagrees', 'shape'),
])
def test_run_refuses_a_broken_checkpoint_before_any_work(how, reason, tmp_path, capsys):
  bad = _broken(tmp_path, how)
  out, clips = tmp_path / 'out', tmp_path / 'clips'
  rc = cli.main(['run', '--init-checkpoint', bad, '--videos-dir', str(tmp_path / 'no_videos'),
                 '--layout', 'folders', '--classes', 'calm,fight', '--positive-class', 'fight',
                 '--clips-dir', str(clips), '--output-root', str(out), '--train-steps', '20'])
  err = [l for l in capsys.readouterr().err.splitlines() if 'error:' in l]
  assert rc == 1 and len(err) == 1, err
  assert reason in err[0] and bad in err[0], err  # the checkpoint, not the (missing) videos
  assert not out.exists() and not clips.exists()  # nothing written
  # `checkpoint inspect` refuses the same folder for the same reason
  assert cli.main(['checkpoint', 'inspect', bad]) == 1
  inspect_err = [l for l in capsys.readouterr().err.splitlines() if 'error:' in l]
  assert len(inspect_err) == 1 and reason in inspect_err[0], inspect_err


def test_a_pretraining_checkpoint_brings_its_encoder_and_decoder(tmp_path, capsys):
  """`{"checkpoint": P}` alone: the encoder (hidden_size 32) and decoder (16 wide, 2 layers,
  2 heads, MLP 32) are the checkpoint's; it loads before any data is read."""
  path = os.path.join(HF, 'videomae-pretraining')
  config = configs.PipelineConfig(output_root=str(tmp_path), preset='vivit-tiny', pretrain=True,
                                  pretrain_overrides=json.dumps({'checkpoint': path}))
  config.validate()
  pretrain, vivit = config.pretrain_config(), config.vivit_config()
  assert (pretrain.decoder_hidden_size, pretrain.decoder_num_layers, pretrain.decoder_num_heads,
          pretrain.decoder_mlp_dim) == (16, 2, 2, 32)
  assert (vivit.hidden_size, vivit.num_frames, tuple(vivit.image_size)) == (32, 4, (32, 32))
  checkpoint_checks.check(vivit, None, pretrain)  # the PretrainTrainer's load
  # A decoder setting given against the checkpoint is one line, before any data
  wider = config.replace(pretrain_overrides=json.dumps({'checkpoint': path,
                                                        'decoder_hidden_size': 32}))
  with pytest.raises(configs.ConfigError, match=r'decoder_hidden_size=32 conflicts with the '
                     r'pre-training checkpoint .*\(decoder_hidden_size=16\)'):
    wider.validate()
  # `run` gets past the checkpoint (the data is what is missing here)
  rc = cli.main(['run', '--preset', 'vivit-tiny', '--pretrain', '--pretrain-overrides',
                 json.dumps({'checkpoint': path}), '--videos-dir', str(tmp_path / 'none'),
                 '--clips-dir', str(tmp_path / 'clips'), '--output-root', str(tmp_path / 'o')])
  err = capsys.readouterr().err
  assert rc == 1 and 'conflicts' not in err and 'has shape' not in err, err
  assert str(tmp_path / 'none') in err, err


def test_an_encoder_setting_against_the_pretraining_checkpoint_is_one_line():
  path = os.path.join(HF, 'videomae-pretraining')
  config = configs.PipelineConfig(preset='vivit-tiny', pretrain=True,
                                  vivit_overrides=json.dumps({'mlp_dim': 48}),
                                  pretrain_overrides=json.dumps({'checkpoint': path}))
  with pytest.raises(CheckpointMismatch, match=r'mlp_dim=48 conflicts .*mlp_dim=64'):
    checkpoint_checks.check(config.vivit_config(), None, config.pretrain_config())


def test_an_earlier_pretraining_model_brings_its_settings_too(tmp_path):
  """A PretrainTrainer model directory: its pretrain_config.json decides encoder and decoder."""
  from vivit_tfx.models.videomae import videomae_pretrain as vp  # pylint: disable=g-import-not-at-top
  made = configs.PipelineConfig(preset='vivit-tiny', pretrain=True).vivit_config().replace(
      hidden_size=16, mlp_dim=32)
  decoder = vp.PretrainConfig(decoder_hidden_size=8, decoder_num_layers=1, decoder_num_heads=2,
                              decoder_mlp_dim=16)
  vp.save(vp.build_pretrainer(made, decoder), str(tmp_path), {'step': [], 'loss': []}, {})
  config = configs.PipelineConfig(preset='vivit-tiny', pretrain=True,
                                  pretrain_overrides=json.dumps({'checkpoint': str(tmp_path)}))
  pretrain, vivit = config.pretrain_config(), config.vivit_config()
  assert (pretrain.decoder_hidden_size, pretrain.decoder_mlp_dim) == (8, 16)
  assert (vivit.hidden_size, vivit.mlp_dim) == (16, 32)
  checkpoint_checks.check(vivit, None, pretrain)
