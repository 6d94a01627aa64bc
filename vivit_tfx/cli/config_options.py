"""PipelineConfig's fields as command-line options: one `--field-name` per field, its help text
and default the field's (`run`, `compile`; `ingest` shares `INGEST_OPTIONS`). The values are
checked afterwards, all together, by `configs.option_errors` and `PipelineConfig.validate`,
which programmatic users of the config get as well."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, Optional, Tuple

from vivit_tfx.pipeline import configs


def parse_size(text: str) -> Tuple[int, int]:
  """A size option's value: '64' or '64x48' → (H, W)."""
  try:
    return configs.parse_size(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from None


def parse_bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if text.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')


# The options `ingest` shares with `run` (declared once, by PipelineConfig's fields).
INGEST_OPTIONS = ('num_frames', 'frame_size', 'sample_fps', 'max_duration_s', 'layout',
                  'classes', 'positive_class', 'group_regex')


def add_arguments(parser: argparse.ArgumentParser, exclude=(), only=None,
                  defaults: Optional[Dict[str, Any]] = None,
                  title: str = 'pipeline configuration (pipeline/configs.py)') -> None:
  """Adds one `--field-name` option per PipelineConfig field (or per field in `only`); the
  defaults are the dataclass's unless `defaults` names others. Values are checked afterwards,
  all together, by `configs.option_errors`."""
  group = parser.add_argument_group(title)
  for field in dataclasses.fields(configs.PipelineConfig):
    if field.name in exclude or (only is not None and field.name not in only):
      continue
    default = (defaults or {}).get(field.name, field.default)
    if field.metadata.get('model'):  # default: the preset's
      kind = field.metadata['type'] or parse_size
    else:
      kind = {int: int, float: float, bool: parse_bool, str: str}.get(
          type(field.default), parse_size)
    shown = "the preset's" if default is None else repr(
        configs.show_value(default) if isinstance(default, tuple) else default)
    flag = dict(nargs='?', const=True) if kind is parse_bool else {}  # `--overwrite` = true
    group.add_argument('--' + configs.flag_name(field.name), dest=field.name, type=kind,
                       default=default, metavar=field.name.upper(),
                       help=f'{field.metadata["help"]} (default: {shown})', **flag)


def from_args(args: argparse.Namespace) -> configs.PipelineConfig:
  """The PipelineConfig of parsed options (the fields `add_arguments` added), resolved: the
  preset's and checkpoints' settings read once, here."""
  names = {f.name for f in dataclasses.fields(configs.PipelineConfig)}
  return configs.PipelineConfig(**{k: v for k, v in vars(args).items() if k in names}).resolve()
