"""Presets that fine-tune the Hugging Face hub's video checkpoints (nothing is downloaded).

A hub preset names the checkpoint it expects in `--init-checkpoint DIR` (a directory the user
downloaded) and brings what the checkpoint does not say: the clip's frame rate as the model was
trained (paper / original config) and a fine-tuning recipe. The architecture, the number of
frames and the image size come from the directory's config.json
(models/checkpoints/hf_checkpoint.py), its
pixels from its preprocessor_config.json (models/checkpoints/pixel_preprocessing.py).

Recipe (VideoMAE's end-to-end fine-tuning, Tong et al. 2022, Table 11 — the one of the four
papers that fine-tunes a pre-trained video transformer with AdamW): base learning rate 1e-3
per 256 clips, here 64 clips per update (8 per replica x 8 accumulation steps, the project's
GPU recipe) → 2.5e-4; layer-wise learning-rate decay 0.75; drop path (stochastic depth) 0.1;
weight decay 0.05; label smoothing 0.1; linear warm-up then cosine decay, warm-up 600 batches
(about 5 epochs of a 1,000-clip training split at batch 8).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Tuple

# The project's own presets sample at the ingestion default.
from vivit_tfx.data.clip_config import DEFAULT_SAMPLE_FPS

FINETUNE_RECIPE: Dict[str, Any] = dict(
    batch_size=8, accumulation_steps=8, learning_rate=2.5e-4, layer_decay=0.75,
    stochastic_depth=0.1, weight_decay=0.05, label_smoothing=0.1, warmup_steps=600,
    precision='mixed_bfloat16', jit_compile=True, clipnorm=1.0, checkpoint_steps=500)


@dataclasses.dataclass(frozen=True)
class HubPreset:
  """One hub checkpoint: where it comes from, what it is, how its clips are sampled."""
  name: str
  repo: str                  # https://huggingface.co/<repo>
  families: Tuple[str, ...]  # hf_checkpoint families a directory for it may be
  sample_fps: float          # frames per second of a training clip (source at `source_fps`)
  clip: str                  # the clip as the model was trained, for the docs and errors
  recipe: Tuple[Tuple[str, Any], ...] = ()  # changes to FINETUNE_RECIPE

  def recipe_dict(self) -> Dict[str, Any]:
    return {**FINETUNE_RECIPE, **dict(self.recipe)}


HUB_PRESETS = {p.name: p for p in (
    HubPreset('vivit-b-16x2-k400', 'google/vivit-b-16x2-kinetics400', ('vivit',), 12.5,
              '32 frames, stride 2 (Scenic kinetics400 config) = 12.5 fps at 25 fps, 224 px'),
    HubPreset('videomae-b-k400', 'MCG-NJU/videomae-base-finetuned-kinetics', ('videomae',),
              7.5, '16 frames, sampling rate 4 = 7.5 fps at 30 fps, 224 px'),
    HubPreset('videomae-b-ssl', 'MCG-NJU/videomae-base', ('videomae-pretraining',), 7.5,
              '16 frames, sampling rate 4 = 7.5 fps at 30 fps, 224 px (self-supervised '
              'encoder and its final norm; a fresh head)'),
    HubPreset('timesformer-b-k400', 'facebook/timesformer-base-finetuned-k400',
              ('timesformer',), 30 / 32,
              '8 frames, sampling rate 32 (TimeSformer divST_8x32_224) = 0.94 fps at 30 fps, '
              '224 px'),
)}


def sample_fps(preset_name: str) -> float:
  """The clip frame rate of a preset: the hub checkpoint's, else the project's default."""
  hub = HUB_PRESETS.get(preset_name)
  return hub.sample_fps if hub else DEFAULT_SAMPLE_FPS


def needs_directory(name: str) -> str:
  """The one-line reason a hub preset cannot be used without its directory."""
  hub = HUB_PRESETS[name]
  return (f'preset {name} fine-tunes {hub.repo}: pass the downloaded directory with '
          f'--init-checkpoint DIR (nothing is downloaded; see docs/training.md)')
