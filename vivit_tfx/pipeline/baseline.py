"""The Evaluators' baseline: the last pushed model, the one in service.

Not the last blessed one: with --reviewed-clips a model the test split's Evaluator blesses can
still be refused on the reviewed clips, and is then never pushed. `LatestPushedModelStrategy`
is the Resolver's rule; `check` tells, before a run, when that model cannot read the run's
records (another `--max-duration-s`, `--sample-fps`, `--num-frames`, or other classes): the run
is then evaluated without a baseline, and says why.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from vivit_tfx.audit import metadata
from vivit_tfx.data.clip_config import ModelClipConfig, NoModelError, clip_config_of

MODEL, PUSHED_MODEL = 'model', 'pushed_model'  # the Resolver's inputs (and outputs)


def pushed_from(store, pushed_model_id: int) -> Optional[int]:
  """The id of the Model a PushedModel came from: the `model` input of the Pusher that wrote
  it (a cached Pusher reuses the artifact and has the same input)."""
  pushers = [ev.execution_id for ev in store.get_events_by_artifact_ids([pushed_model_id])
             if ev.type == metadata_store_pb2.Event.OUTPUT]
  for ev in store.get_events_by_execution_ids(pushers) if pushers else []:
    if (ev.type == metadata_store_pb2.Event.INPUT and ev.path.steps
        and ev.path.steps[0].key == MODEL):
      return ev.artifact_id
  return None


def newest_pushed_model(store, push_ids: Sequence[int],
                        known: Callable[[int], bool] = lambda model_id: True) -> Optional[int]:
  """The id of the Model behind the newest of the pushes `push_ids` (each `pushed` = 1) whose
  Model `known` accepts; None when there is none."""
  for push_id in sorted(push_ids, reverse=True):
    model_id = pushed_from(store, push_id)
    if model_id and known(model_id):
      return model_id
  return None


class LatestPushedModelStrategy(resolver.ResolverStrategy):
  """Resolves the Model behind the newest PushedModel whose `pushed` is 1; nothing before a
  first push. Inputs: `model` (Model) and `pushed_model` (PushedModel). The push itself is
  not passed on: the Resolver's outputs are recorded in this run, whose own push (or none)
  the run summary reports."""

  def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                        ) -> Optional[Dict[str, List[types.Artifact]]]:
    models = {m.id: m for m in input_dict[MODEL]}
    model_id = newest_pushed_model(
        store, [p.id for p in input_dict[PUSHED_MODEL] if p.get_int_custom_property('pushed') == 1],
        known=models.__contains__)
    return {MODEL: [models[model_id]] if model_id else [], PUSHED_MODEL: []}


def last_pushed_model_dir(store) -> Optional[str]:
  """The serving directory of the Model behind the newest push whose Model is known (the
  Resolver's choice), or None before a first push."""
  model_id = newest_pushed_model(store, [
      a.id for name in metadata.type_names('PushedModel') for a in store.get_artifacts_by_type(name)
      if metadata.property_value(a, 'pushed') == 1])
  if not model_id:
    return None
  return os.path.join(store.get_artifacts_by_id([model_id])[0].uri, 'Format-Serving')


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
  """A line for the console when the last pushed model in the local store cannot be the
  baseline for records of `stored` slots and `class_names`; '' otherwise."""
  if not os.path.exists(metadata_path):
    return ''
  model_dir = last_pushed_model_dir(metadata.open_sqlite(metadata_path))
  if not model_dir:
    return ''
  try:
    clip = clip_config_of(model_dir)
  except NoModelError:  # a model this project did not export: TFMA decides
    return ''
  reason = unreadable_reason(clip, stored, class_names)
  return reason and (f'Evaluator: no baseline this run: the last pushed model '
                     f'({model_dir}) cannot read this run\'s records ({reason}); the '
                     'candidate is judged on the absolute accuracy threshold only')
