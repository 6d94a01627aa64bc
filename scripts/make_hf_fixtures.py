"""Regenerates tests/fixtures/hf/: tiny Hugging Face checkpoints made and run by transformers.

Needs torch + transformers + safetensors + pillow in a separate environment (CI never installs
torch; the tests only read what this script wrote):

  python3 -m venv /work/torchenv
  /work/torchenv/bin/pip install torch transformers safetensors pillow
  /work/torchenv/bin/python scripts/make_hf_fixtures.py [--output tests/fixtures/hf]

Every family at hidden 32, 2 layers, 2 heads, MLP 64, 32 px, patch 8, 4 frames (tubelet 2x8x8),
3 labels; EVERY parameter redrawn to a non-trivial value after construction (transformers'
init leaves biases, CLS and ViViT's positions at zero, so a loader that skipped them would
still pass). Output, one folder per family (`save_pretrained`: config.json,
model.safetensors, preprocessor_config.json) plus `expected.npz`, and `clips.npz` shared by all:

  clips.npz      random [4, 32, 32, 3] uint8, real [4, 40, 60, 3] uint8 (needs resize + crop)
  expected.npz   pixels [1, T, 32, 32, 3] float16 (normalised, channels last; exact in
                 float32) and logits_pixels (the model on them, float32); logits_random and
                 logits_real: the model on the processor's pixel values of each clip;
                 frames_real [T, 32, 32, 3] uint8: the real clip as the processor resized and
                 cropped it (its pixel values are the rescale + mean/std formula of these).
                 Image ViT: pixels [2, 32, 32, 3], each frame of a clip is one image.
                 `vit` (no head) and `videomae-pretraining` (its encoder): hidden_* instead of
                 logits_* (last_hidden_state [B, N, D]); videomae-pretraining also has
                 bool_masked_pos [1, 32], loss and decoder_logits of the pre-training forward.
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch
import transformers as tr

SIZE, PATCH, FRAMES, HIDDEN, LAYERS, HEADS, MLP = 32, 8, 4, 32, 2, 2, 64
LABELS = {0: 'dancing', 1: 'fighting', 2: 'hugging'}
COMMON = dict(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              intermediate_size=MLP, image_size=SIZE, id2label=LABELS,
              label2id={v: k for k, v in LABELS.items()})
IMAGENET = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
VIDEO_SIZE = dict(size={'shortest_edge': SIZE}, crop_size={'height': SIZE, 'width': SIZE})


def redraw(model: torch.nn.Module, seed: int) -> None:
  """Every parameter non-trivial: norm scales 1 + N(0, 0.2), everything else N(0, 0.2), all
  rounded to float16 values (stored as float16: a small fixture, read back exactly)."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen) * 0.2
      is_scale = name.endswith('.weight') and p.ndim == 1
      p.copy_((1.0 + noise if is_scale else noise).half().float())


def clips() -> dict:
  rng = np.random.default_rng(22)
  random = rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
  # A smooth scene: a lit gradient background and a disc that moves, plus sensor noise.
  h, w = 40, 60
  y, x = np.mgrid[0:h, 0:w]
  real = np.empty((FRAMES, h, w, 3), np.float64)
  for t in range(FRAMES):
    base = np.stack([80 + 90 * x / w, 60 + 120 * y / h, 140 - 50 * x / w], -1)
    disc = ((y - 20) ** 2 + (x - 18 - 6 * t) ** 2) < 64
    base[disc] = (220, 180 - 20 * t, 60)
    real[t] = base + rng.normal(0, 6, base.shape)
  return {'random': random, 'real': np.clip(real, 0, 255).round().astype(np.uint8)}


def video_pixels(processor, clip: np.ndarray) -> torch.Tensor:
  """uint8 [T, H, W, 3] → the processor's pixel_values [1, T, 3, h, w]."""
  return processor(list(clip), return_tensors='pt')['pixel_values']


def image_pixels(processor, clip: np.ndarray) -> torch.Tensor:
  """uint8 [T, H, W, 3] → every frame as an image [T, 3, h, w]."""
  return processor(list(clip), return_tensors='pt')['pixel_values']


def channels_last(pixels: torch.Tensor) -> np.ndarray:
  return np.moveaxis(pixels.numpy(), -3, -1).astype(np.float32)


def channels_first(pixels: np.ndarray) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, -1, -3)))


def processed_frames(processor, pixels: np.ndarray) -> np.ndarray:
  """The processor's pixel values (channels last) back to the uint8 frames it resized and
  cropped: exact, because rescale and mean/std are affine maps of uint8 values."""
  offset = 1.0 if getattr(processor, 'offset', False) else 0.0
  mean, std = np.asarray(processor.image_mean), np.asarray(processor.image_std)
  values = ((pixels * std + mean) + offset) / processor.rescale_factor
  assert np.abs(values - values.round()).max() < 2e-3, 'not an affine map of uint8 frames'
  return values.round().astype(np.uint8)


def run_family(out, name, model, processor, output, video=True, seed=0, extra=None,
               key='logits'):
  """Saves the checkpoint (float16) + processor and the outputs of `output(model, pixels)`
  computed in float32."""
  redraw(model, seed)
  model.eval()
  folder = os.path.join(out, name)
  rng = np.random.default_rng(seed)
  shape = (1, FRAMES, SIZE, SIZE, 3) if video else (2, SIZE, SIZE, 3)
  pixels = rng.normal(0, 1, shape).astype(np.float16)
  expected = {'pixels': pixels}
  with torch.no_grad():
    expected[f'{key}_pixels'] = output(model, channels_first(pixels.astype(np.float32)))
    for clip_name, clip in clips().items():
      pv = (video_pixels if video else image_pixels)(processor, clip)
      expected[f'{key}_{clip_name}'] = output(model, pv)
      if clip_name == 'real':  # the random clip needs no resize: its pixels are the formula's
        expected['frames_real'] = processed_frames(processor, channels_last(pv))
    expected.update(extra(model, pixels.astype(np.float32)) if extra else {})
  model.half().save_pretrained(folder)
  processor.save_pretrained(folder)
  np.savez_compressed(os.path.join(folder, 'expected.npz'), **expected)
  print(name, {k: v.shape for k, v in expected.items()})


def logits(model, pixels):
  return model(pixel_values=pixels).logits.numpy()


def hidden(model, pixels):
  return model(pixel_values=pixels).last_hidden_state.numpy()


def pretraining_extra(model, pixels):
  """A fixed mask (24 of 32 tubelets per clip), norm_pix_loss: loss and decoder logits."""
  n = (FRAMES // 2) * (SIZE // PATCH) ** 2
  rng = np.random.default_rng(5)
  mask = np.zeros((1, n), bool)
  for row in mask:
    row[rng.permutation(n)[:24]] = True
  out = model(pixel_values=channels_first(pixels), bool_masked_pos=torch.from_numpy(mask))
  return {'bool_masked_pos': mask, 'loss': np.float32(out.loss.item()),
          'decoder_logits': out.logits.numpy()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output', default=os.path.join(os.path.dirname(__file__), '..', 'tests',
                                                       'fixtures', 'hf'))
  out = parser.parse_args().output
  os.makedirs(out, exist_ok=True)
  np.savez(os.path.join(out, 'clips.npz'), **clips())
  torch.manual_seed(0)
  vit_processor = tr.ViTImageProcessor(size={'height': SIZE, 'width': SIZE},
                                       image_mean=[0.5] * 3, image_std=[0.5] * 3)
  vit = dict(patch_size=PATCH, layer_norm_eps=1e-12, hidden_act='gelu', **COMMON)
  run_family(out, 'vit', tr.ViTModel(tr.ViTConfig(**vit), add_pooling_layer=True),
             vit_processor, hidden, video=False, seed=1, key='hidden')
  run_family(out, 'vit-classification', tr.ViTForImageClassification(tr.ViTConfig(**vit)),
             vit_processor, logits, video=False, seed=2)
  run_family(out, 'vivit', tr.VivitForVideoClassification(tr.VivitConfig(
      num_frames=FRAMES, tubelet_size=[2, PATCH, PATCH], hidden_act='gelu_fast',
      layer_norm_eps=1e-6, **COMMON)),
      tr.VivitImageProcessor(rescale_factor=1 / 127.5, offset=True, image_mean=[0.5] * 3,
                             image_std=[0.5] * 3, **VIDEO_SIZE), logits, seed=3)
  videomae = dict(patch_size=PATCH, num_frames=FRAMES, tubelet_size=2, **COMMON)
  videomae_processor = tr.VideoMAEImageProcessor(**VIDEO_SIZE, **IMAGENET)
  run_family(out, 'videomae', tr.VideoMAEForVideoClassification(tr.VideoMAEConfig(
      use_mean_pooling=True, **videomae)), videomae_processor, logits, seed=4)
  run_family(out, 'videomae-pretraining', tr.VideoMAEForPreTraining(tr.VideoMAEConfig(
      use_mean_pooling=False, norm_pix_loss=True, decoder_hidden_size=16,
      decoder_num_hidden_layers=2, decoder_num_attention_heads=2, decoder_intermediate_size=32,
      **videomae)), videomae_processor,
      lambda m, p: m.videomae(pixel_values=p).last_hidden_state.numpy(), seed=5,
      extra=pretraining_extra, key='hidden')
  run_family(out, 'timesformer', tr.TimesformerForVideoClassification(tr.TimesformerConfig(
      patch_size=PATCH, num_frames=FRAMES, layer_norm_eps=1e-6, **COMMON)),
      tr.VideoMAEImageProcessor(**VIDEO_SIZE, image_mean=[0.45] * 3, image_std=[0.225] * 3),
      logits, seed=6)
  with open(os.path.join(out, 'versions.json'), 'w') as f:
    json.dump({'torch': torch.__version__, 'transformers': tr.__version__}, f)


if __name__ == '__main__':
  main()
