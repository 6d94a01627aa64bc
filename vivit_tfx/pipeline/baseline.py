"""Can the Evaluator's baseline (the last blessed model) read this run's records? A rerun with
new sampling settings (another `--max-duration-s`, `--sample-fps`, `--num-frames`) or other
classes makes records that the last blessed model's `serving_default` refuses: that run is
then evaluated without the baseline, and says why."""
from __future__ import annotations

import os
from typing import Optional, Sequence

from vivit_tfx.audit import metadata
from vivit_tfx.data.clip_config import ModelClipConfig, NoModelError, clip_config_of


def last_blessed_model_dir(store) -> Optional[str]:
  """The serving directory of the newest blessed Model (the Resolver's
  LatestBlessedModelStrategy picks it), or None when no model was blessed yet."""
  blessing = metadata.latest_artifact(
      store, 'ModelBlessing', where=lambda a: metadata.property_value(a, 'blessed') == 1)
  model_id = blessing and metadata.property_value(blessing, 'current_model_id')
  if not model_id:
    return None
  model = store.get_artifacts_by_id([int(model_id)])[0]
  return os.path.join(model.uri, 'Format-Serving')


def unreadable_reason(clip: ModelClipConfig, stored: int, class_names: Sequence[str]) -> str:
  """Why a model exported with clip config `clip` cannot score records of `stored` frame
  slots labelled with `class_names` ('' when it can), by `serving_default`'s rule: exactly T
  frames when its records held T, else 1 to its N."""
  if list(clip.class_names) != list(class_names):
    return (f'it was trained on classes {list(clip.class_names)}, this run has '
            f'{list(class_names)}')
  own = clip.stored_frames
  low = own if own == clip.num_frames else 1
  if low <= stored <= own:
    return ''
  return (f'it reads records of {own if low == own else f"1 to {own}"} frames '
          f'(T = {clip.num_frames}, {clip.sample_fps} fps, up to '
          f'{clip.max_duration_s} s), this run\'s records hold {stored}')


def check(metadata_path: str, stored: int, class_names: Sequence[str]) -> str:
  """A line for the console when the last blessed model in the local store cannot be the
  baseline for records of `stored` slots and `class_names`; '' otherwise."""
  if not os.path.exists(metadata_path):
    return ''
  model_dir = last_blessed_model_dir(metadata.open_sqlite(metadata_path))
  if not model_dir:
    return ''
  try:
    clip = clip_config_of(model_dir)
  except NoModelError:  # a model this project did not export: TFMA decides
    return ''
  reason = unreadable_reason(clip, stored, class_names)
  return reason and (f'Evaluator: no baseline this run: the last blessed model '
                     f'({model_dir}) cannot read this run\'s records ({reason}); the '
                     'candidate is judged on the absolute accuracy threshold only')
