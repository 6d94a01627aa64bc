"""Every knob of the pipeline in one place, with defaults for the embedded synthetic dataset.

Each field is also a command-line option of `vivit-tfx run` / `compile` (`--train-steps 300`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

PIPELINE_NAME = 'vivit-violence'
PREPROCESSING_FN = 'vivit_tfx.models.preprocessing.preprocessing_fn'
RUN_FN = 'vivit_tfx.models.model.run_fn'
PRETRAIN_RUN_FN = 'vivit_tfx.models.pretrain_model.run_fn'
INPUT_MODES = ('tfrecords', 'videos')
IF_BUSY = ('stop', 'wait')
DEFAULT_VIDEOS_DIR = 'data/synthetic_videos'  # the only folder `run` may fill with synthetic data


class ConfigError(ValueError):
  """Invalid settings: one line per problem."""

  def __init__(self, errors: List[str]):
    super().__init__('\n'.join(errors))
    self.errors = errors


def _flag(name: str) -> str:
  return name.replace('_', '-')

# PipelineConfig fields that are ViViTConfig fields: None means "the preset's value"; a value
# given (flag or constructor) overrides the preset. After construction they hold the effective
# values, read from the model config (not copied defaults).
MODEL_FIELDS = ('num_frames', 'image_size', 'variant', 'batch_size', 'learning_rate')


def _from_model(kind, help_text: str):
  return dataclasses.field(default=None, metadata={'type': kind, 'help': help_text})


@dataclasses.dataclass
class PipelineConfig:
  """Paths, clip shape, model, training, evaluation thresholds and Beam settings."""
  # Names and paths.
  pipeline_name: str = PIPELINE_NAME
  model_name: str = 'vivit_violence'
  output_root: str = 'output'          # pipeline root, metadata and serving dir live here
  pipeline_root_uri: str = ''          # overrides <output_root>/pipeline_root (gs://, s3://, …)
  serving_uri: str = ''                # overrides <output_root>/serving (Pusher destination)
  videos_dir: str = DEFAULT_VIDEOS_DIR  # RLVS layout; the default is written (synthetic) if absent
  clips_dir: str = 'data/clips'        # ingested split TFRecords (ImportExampleGen input)
  input_mode: str = 'tfrecords'        # 'tfrecords': ingest + ImportExampleGen;
                                       # 'videos': VideoExampleGen reads videos on Beam
  schema_file: str = ''                # default: the curated schemas/clip_schema.pbtxt
  synthetic_clips: int = 200
  # Dataset (issue 13): layout of videos_dir, class order, positive class, grouping.
  layout: str = 'auto'                 # auto | rlvs | rwf2000 | hockey | folders | csv
  classes: str = ''                    # comma-separated label order, e.g. 'Normal,Abuse,Fight'
  positive_class: str = ''             # binary sets: the positive class (label 1)
  group_regex: str = ''                # videos whose relative paths share group 1 stay together
  # Clip shape (the model's: default from --preset).
  num_frames: Optional[int] = _from_model(int, 'T frames per clip (default: the preset\'s)')
  frame_size: Optional[Tuple[int, int]] = _from_model(
      None, 'stored JPEG frames HxW (default: the model\'s image size)')
  image_size: Optional[Tuple[int, int]] = _from_model(
      None, 'model input HxW after Transform\'s resize (default: the preset\'s)')
  # Temporal sampling rule (issue 13; models/clip_views.py).
  sample_fps: float = 8.0              # frames per second of a clip (spans T / sample_fps s);
                                       # 0: T frames spread over the whole video
  max_duration_s: float = 10.0         # frames kept per video: its central max_duration_s
  num_views: int = 4                   # K clips per video averaged at evaluation and serving
  # Model and training: the preset's architecture and recipe, unless a flag overrides one.
  preset: str = 'vivit-tiny'
  variant: Optional[str] = _from_model(
      str, 'spatiotemporal | factorised_encoder | factorised_self_attention | '
      'factorised_dot_product (default: the preset\'s)')
  vivit_overrides: str = '{}'          # JSON of extra ViViTConfig fields
  batch_size: Optional[int] = _from_model(int, 'clips per replica (default: the preset\'s)')
  learning_rate: Optional[float] = _from_model(float, 'default: the preset\'s')
  init_checkpoint: str = ''            # image ViT .npz or Hugging Face model directory to start from
  pixels: str = 'auto'                 # auto | dataset | scenic | processor | a preprocessor_config.json
                                       # (models/pixel_preprocessing.py `choose`)
  train_steps: int = 600
  eval_steps: int = 4
  steps_per_epoch: int = 50
  distribution: str = 'auto'           # auto | default | mirrored | multi_worker | tpu
  # Self-supervised VideoMAE pre-training (models/videomae_pretrain.py) of the encoder on the
  # train split's videos plus --unlabeled-videos; its model starts the fine-tuning Trainer.
  pretrain: bool = False
  unlabeled_videos: str = ''           # extra footage, any layout, labels ignored
  unlabeled_clips_dir: str = ''        # where it is ingested (default <output_root>/unlabeled_clips)
  pretrain_steps: int = 300
  pretrain_overrides: str = '{}'       # JSON of PretrainConfig fields (mask_ratio, decoder_*, …)
  tpu_address: str = ''
  # Evaluation and blessing.
  accuracy_threshold: float = 0.8      # bless only above this test accuracy ...
  max_accuracy_drop: float = 0.0       # ... and no worse than the last blessed model by more,
  min_test_examples_per_class: int = 5     # ... and with at least this many test examples
  min_test_fraction_per_class: float = 0.1  # and this share of the test split in every class
  # Orchestration.
  enable_cache: bool = True
  beam_args: str = '--direct_num_workers=1'  # e.g. '--runner=DataflowRunner --project=…'
  overwrite: bool = False              # let `run` re-ingest over clips made from other settings
  if_busy: str = 'stop'                # another run holds the output root: 'stop' | 'wait'

  def __post_init__(self):
    # The values given (not None), kept so that replace(preset=…) re-resolves the others.
    self._given = {n: getattr(self, n) for n in MODEL_FIELDS + ('frame_size',)
                   if getattr(self, n) is not None}
    try:
      model = self.vivit_config()
    except (ValueError, TypeError):  # reported, with every other problem, by validate()
      self.frame_size = self._given.get('frame_size', self.image_size)
      return
    for name in MODEL_FIELDS:
      setattr(self, name, getattr(model, name))
    self.frame_size = tuple(self._given.get('frame_size', model.image_size))

  @property
  def pipeline_root(self) -> str:
    return absolute(self.pipeline_root_uri or os.path.join(self.output_root, 'pipeline_root'))

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_root, 'metadata.sqlite')

  @property
  def serving_dir(self) -> str:
    """Pusher destination: TF Serving's <serving_dir>/<model_name>/<version>/ layout."""
    return absolute(self.serving_uri or os.path.join(self.output_root, 'serving'))

  @property
  def beam_pipeline_args(self) -> List[str]:
    return self.beam_args.split() if self.beam_args else []

  def vivit_config(self):
    """The ViViTConfig handed to the Trainer: the preset, then --vivit-overrides, then the
    model flags given explicitly."""
    from vivit_tfx.models.vivit_config import preset  # pylint: disable=g-import-not-at-top
    try:
      overrides: Dict[str, Any] = json.loads(self.vivit_overrides or '{}')
    except json.JSONDecodeError as e:
      raise ValueError(f'--vivit-overrides is not JSON: {e}') from None
    overrides.update({n: v for n, v in self._given.items() if n in MODEL_FIELDS})
    if self.init_checkpoint:
      overrides['init_checkpoint'] = absolute(self.init_checkpoint)
    return preset(self.preset, **overrides)

  @property
  def unlabeled_clips(self) -> str:
    """The ingested --unlabeled-videos ('' when none are given)."""
    if not self.unlabeled_videos:
      return ''
    return absolute(self.unlabeled_clips_dir or os.path.join(self.output_root, 'unlabeled_clips'))

  def pretrain_config(self):
    """The PretrainConfig of the pre-training Trainer (defaults + --pretrain-overrides)."""
    from vivit_tfx.models.videomae_pretrain import PretrainConfig  # pylint: disable=g-import-not-at-top
    try:
      overrides = json.loads(self.pretrain_overrides or '{}')
    except json.JSONDecodeError as e:
      raise ValueError(f'--pretrain-overrides is not JSON: {e}') from None
    if not isinstance(overrides, dict):
      raise ValueError('--pretrain-overrides is not a JSON object')
    return PretrainConfig.from_dict(overrides)

  def pixel_preprocessing(self):
    """The model's pixels (`--pixels`, `--init-checkpoint`) at the model's image size."""
    from vivit_tfx.models import pixel_preprocessing  # pylint: disable=g-import-not-at-top
    return pixel_preprocessing.choose(self.pixels, absolute(self.init_checkpoint) if (
        self.init_checkpoint) else '').for_image_size(self.image_size)

  def validate(self) -> None:
    """Raises ConfigError listing every invalid setting, one line each, before data is
    touched: known names, positive counts, frames and image size against the tubelet."""
    from vivit_tfx.components.layouts import LAYOUTS  # pylint: disable=g-import-not-at-top
    from vivit_tfx.models.distribution import STRATEGIES  # pylint: disable=g-import-not-at-top
    errors = []
    for name in ('num_frames', 'batch_size', 'train_steps', 'eval_steps', 'steps_per_epoch',
                 'synthetic_clips', 'pretrain_steps'):
      if getattr(self, name) is not None and getattr(self, name) <= 0:
        errors.append(f'--{_flag(name)} must be positive, got {getattr(self, name)}')
    for name in ('frame_size', 'image_size'):
      if getattr(self, name) is not None and min(getattr(self, name)) <= 0:
        errors.append(f'--{_flag(name)} must be positive, got {getattr(self, name)}')
    if self.num_views <= 0 or self.sample_fps < 0 or self.max_duration_s <= 0:
      errors.append('--num-views and --max-duration-s must be positive and --sample-fps ≥ 0 '
                    f'(got {self.num_views}, {self.max_duration_s}, {self.sample_fps})')
    if self.learning_rate is not None and self.learning_rate <= 0:
      errors.append(f'--learning-rate must be positive, got {self.learning_rate}')
    if self.min_test_examples_per_class < 0 or not 0 <= self.min_test_fraction_per_class <= 1:
      errors.append('--min-test-examples-per-class must be ≥ 0 and '
                    '--min-test-fraction-per-class within [0, 1]')
    for name, value, allowed in (
        ('input_mode', self.input_mode, INPUT_MODES),
        ('distribution', self.distribution, STRATEGIES),
        ('if_busy', self.if_busy, IF_BUSY), ('layout', self.layout, LAYOUTS)):
      if value not in allowed:
        errors.append(f'--{_flag(name)} {value!r} is not one of: {", ".join(allowed)}')
    if not 0 <= self.accuracy_threshold <= 1:
      errors.append(f'--accuracy-threshold must be within [0, 1], got {self.accuracy_threshold}')
    try:
      overrides = json.loads(self.vivit_overrides or '{}')
      if not isinstance(overrides, dict):
        raise ValueError('not a JSON object')
    except ValueError as e:
      errors.append(f'--vivit-overrides is not a JSON object: {e}')
    if self.unlabeled_videos and not self.pretrain:
      errors.append('--unlabeled-videos is pre-training footage: pass --pretrain too')
    if not errors:  # the model's own checks, once the settings it is built from are sane
      try:
        self.vivit_config()
      except (ValueError, TypeError) as e:
        errors.append(f'model configuration: {e}')
      try:
        self.pixel_preprocessing()
      except ValueError as e:
        errors.append(f'--pixels {self.pixels}: {e}')
    if not errors and self.pretrain:
      try:
        self.pretrain_config()
        model = self.vivit_config()
        if model.variant != 'spatiotemporal' or model.classifier == 'token':
          raise ValueError('VideoMAE pre-training needs the joint space-time encoder without a '
                           f"CLS token (variant 'spatiotemporal', classifier 'gap' or "
                           f"'gap_fc_norm'), got {model.variant!r}, {model.classifier!r}")
      except (ValueError, TypeError) as e:
        errors.append(f'pre-training configuration: {e}')
    if errors:
      raise ConfigError(errors)

  def clip_config(self):
    """The ingestion ClipConfig (T, frame size, sampling rule) of this pipeline."""
    from vivit_tfx.components.ingest import ClipConfig  # pylint: disable=g-import-not-at-top
    return ClipConfig(num_frames=self.num_frames, frame_size=tuple(self.frame_size),
                      sample_fps=self.sample_fps, max_duration_s=self.max_duration_s)

  def dataset_config(self):
    """The DatasetConfig that ingest and VideoExampleGen read the videos with."""
    from vivit_tfx.components.layouts import DatasetConfig  # pylint: disable=g-import-not-at-top
    return DatasetConfig(layout=self.layout, classes=split_names(self.classes),
                         positive_class=self.positive_class, group_regex=self.group_regex)

  def model_summary(self) -> str:
    """The effective model configuration, printed once by `run`."""
    model = self.vivit_config()
    given = sorted(n for n in self._given if n in MODEL_FIELDS)
    fmt = lambda d: ', '.join(f'{k}={v}' for k, v in dataclasses.asdict(d).items())
    return (f'model: preset {self.preset} (overridden: {", ".join(given) or "nothing"}; '
            f'--vivit-overrides {self.vivit_overrides})\n'
            f'  architecture: {fmt(model.architecture)}\n  recipe: {fmt(model.recipe)}\n'
            f'  pixels: {self.pixel_preprocessing().describe()}')

  def replace(self, **changes) -> 'PipelineConfig':
    given = {n: self._given.get(n) for n in MODEL_FIELDS + ('frame_size',)}
    return dataclasses.replace(self, **{**given, **changes})


def absolute(path: str) -> str:
  """An absolute local path; URIs (gs://, s3://, …) are returned as they are."""
  return path if '://' in path else os.path.abspath(path)


def split_names(text: str) -> Tuple[str, ...]:
  """'A, B,C' → ('A', 'B', 'C')."""
  return tuple(n.strip() for n in text.split(',') if n.strip())


def parse_size(text: str) -> Tuple[int, int]:
  """'64' or '64x48' → (H, W)."""
  parts = text.lower().split('x')
  try:
    values = tuple(int(p) for p in parts)
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected SIZE or HxW, got {text!r}') from None
  return values * 2 if len(values) == 1 else values[:2]


def _parse_bool(text: str) -> bool:
  if text.lower() in ('1', 'true', 'yes', 'on'):
    return True
  if text.lower() in ('0', 'false', 'no', 'off'):
    return False
  raise argparse.ArgumentTypeError(f'expected true/false, got {text!r}')


def add_arguments(parser: argparse.ArgumentParser, exclude=()) -> None:
  """Adds one `--field-name` option per PipelineConfig field (defaults from the dataclass)."""
  group = parser.add_argument_group('pipeline configuration (pipeline/configs.py)')
  for field in dataclasses.fields(PipelineConfig):
    if field.name in exclude:
      continue
    if 'help' in field.metadata:  # a model field: default from the preset
      kind, text = field.metadata['type'] or parse_size, field.metadata['help']
    else:
      kind = {int: int, float: float, bool: _parse_bool, str: str}.get(
          type(field.default), parse_size)
      text = f'default: {field.default!r}'
    flag = dict(nargs='?', const=True) if kind is _parse_bool else {}  # `--overwrite` = true
    group.add_argument('--' + field.name.replace('_', '-'), dest=field.name, type=kind,
                       default=field.default, metavar=field.name.upper(), help=text, **flag)


def from_args(args: argparse.Namespace) -> PipelineConfig:
  names = {f.name for f in dataclasses.fields(PipelineConfig)}
  return PipelineConfig(**{k: v for k, v in vars(args).items() if k in names})
