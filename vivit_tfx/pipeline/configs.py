"""Every knob of the pipeline in one place, with defaults for the embedded synthetic dataset.

Each field is also a command-line option of `vivit-tfx run`, `compile` and `report`
(`--train-steps 300`), declared once with its help text (`cli/config_options.py` makes the
options); `ingest` shares some of them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vivit_tfx.data import ingest_output, layouts
from vivit_tfx.data.clip_config import TFLITE_QUANTIZATIONS, ClipConfig, ModelClipConfig
from vivit_tfx.models.checkpoints import hub_presets
from vivit_tfx.models.network.vivit_config import preset as vivit_preset
from vivit_tfx.pipeline import beam_options

PIPELINE_NAME = 'vivit-violence'
PREPROCESSING_FN = 'vivit_tfx.models.trainer.preprocessing.preprocessing_fn'
RUN_FN = 'vivit_tfx.models.trainer.model.run_fn'
PRETRAIN_RUN_FN = 'vivit_tfx.models.videomae.pretrain_model.run_fn'
# Masked pre-training through the conv tokenizer hides 3 of 4 spatial cells (ConvMAE's and
# SparK's share, not VideoMAE's 0.9: a hybrid's 4 x 4 grid would keep 2 visible cells).
CONV_MASK_RATIO = 0.75
INPUT_MODES = ('tfrecords', 'videos')
IF_BUSY = ('stop', 'wait')
UNLABELED_USES = ('self-training', 'pretraining')  # --unlabeled-use
DEFAULT_VIDEOS_DIR = 'data/synthetic_videos'  # the only folder `run` may fill with synthetic data
# --train-steps 0: this many updates per training video, within AUTO_STEPS (a data set of 400
# videos, 280 of them for training, gets 2,240; the built-in 200, 1,120).
STEPS_PER_TRAIN_VIDEO = 8
AUTO_STEPS = (600, 6000)


def auto_train_steps(train_videos: int) -> int:
  """The default training length: STEPS_PER_TRAIN_VIDEO per training video, within
  AUTO_STEPS."""
  return int(min(AUTO_STEPS[1], max(AUTO_STEPS[0], STEPS_PER_TRAIN_VIDEO * train_videos)))


class ConfigError(ValueError):
  """Invalid settings: one line per problem."""

  def __init__(self, errors: List[str]):
    super().__init__('\n'.join(errors))
    self.errors = errors


def flag_name(name: str) -> str:
  """A field's command-line option without its dashes: num_frames → num-frames."""
  return name.replace('_', '-')

# PipelineConfig fields that are ViViTConfig fields: None means "the preset's value"; a value
# given (flag or constructor) overrides the preset. After construction they hold the effective
# values, read from the model config (not copied defaults).
MODEL_FIELDS = ('num_frames', 'image_size', 'variant', 'batch_size', 'learning_rate')
CLIP_FIELDS = ('frame_size', 'sample_fps')  # also the preset's unless given


def _from_model(kind, help_text: str):
  """A model setting: None means "the preset's value"."""
  return dataclasses.field(default=None, metadata={'type': kind, 'help': help_text,
                                                   'model': True})


def _option(default, help_text: str):
  """A field and its command-line option: what it does, its unit and range."""
  return dataclasses.field(default=default, metadata={'help': help_text})


@dataclasses.dataclass
class PipelineConfig:
  """Paths, clip shape, model, training, evaluation thresholds and Beam settings."""
  # Names and paths.
  pipeline_name: str = _option(PIPELINE_NAME, 'the pipeline\'s name in ML Metadata (runs, '
                               'lineage and reports find it by this)')
  model_name: str = _option('vivit_violence', 'the pushed model\'s name: '
                            '<serving dir>/<model name>/<version>/')
  output_root: str = _option('output', 'folder of the pipeline root, ML Metadata '
                             '(metadata.sqlite), the serving dir, logs and reports')
  pipeline_root_uri: str = _option('', "where components write artifacts (gs://, s3://, a "
                                   "path); '': <output-root>/pipeline_root")
  serving_uri: str = _option('', "the Pusher's destination (gs://, s3://, a path); '': "
                             '<output-root>/serving')
  videos_dir: str = _option(DEFAULT_VIDEOS_DIR, 'labelled videos to ingest (see --layout); the '
                            'default folder is filled with synthetic videos if absent')
  clips_dir: str = _option('data/clips', 'ingested split TFRecords the pipeline reads '
                           '(--input-mode tfrecords)')
  input_mode: str = _option('tfrecords', 'tfrecords: ingest, then ImportExampleGen reads the '
                            'clips; videos: VideoExampleGen decodes the videos on Beam')
  schema_file: str = _option('', "schema .pbtxt the clips are validated against; '': the "
                             'curated schemas/clip_schema.pbtxt')
  synthetic_clips: int = _option(200, 'synthetic videos written when the default --videos-dir '
                                 'is absent (> 0)')
  # Dataset: layout of videos_dir, class order, positive class, grouping (`ingest`'s too).
  layout: str = _option('auto', 'how labels are read from the input: auto (detected), '
                        'rlvs, rwf2000, hockey, folders or csv')
  classes: str = _option('', "comma-separated class names in label order, e.g. "
                         "Normal,Abuse,Fight; empty: the layout's")
  positive_class: str = _option('', 'binary sets: the positive class (label 1)')
  group_regex: str = _option('', 'regex on the relative path; videos with the same group '
                             '(group 1, else the match) never land in two splits')
  # Clip shape (the model's: default from --preset).
  num_frames: Optional[int] = _from_model(int, 'T frames per clip (> 0)')
  frame_size: Optional[Tuple[int, int]] = _from_model(
      None, "stored JPEG frames, SIZE or HxW pixels (run: the model's image size)")
  image_size: Optional[Tuple[int, int]] = _from_model(
      None, "model input, SIZE or HxW pixels, after Transform's resize")
  # Temporal sampling rule (models/trainer/clip_views.py).
  sample_fps: Optional[float] = _from_model(
      float, 'frames per second of a clip (spans T / sample_fps s; the vivit presets: 8); 0: T '
      'frames spread over the whole video')
  max_duration_s: float = _option(10.0, 'seconds kept per video (its central part; > 0)')
  num_views: int = _option(4, 'K clips per video whose scores are averaged at evaluation and '
                           'serving (> 0)')
  # Model and training: the preset's architecture and recipe, unless a flag overrides one.
  preset: str = _option('vivit-hybrid-tiny', 'architecture and training recipe: '
                        'vivit-hybrid-tiny (conv tokenizer, CPU), vivit-hybrid-b (conv, GPU), '
                        'vivit-tiny (linear tubelets), vivit-<ti|s|b|l|h>-<patch>x<tubelet '
                        'frames> or a hub checkpoint\'s (models/network/vivit_config.py)')
  variant: Optional[str] = _from_model(
      str, 'attention: spatiotemporal | factorised_encoder | factorised_self_attention | '
      'factorised_dot_product')
  vivit_overrides: str = _option('{}', 'JSON object of extra ViViTConfig fields, e.g. '
                                 '\'{"num_layers": 4}\'')
  batch_size: Optional[int] = _from_model(int, 'clips per replica per step (> 0)')
  learning_rate: Optional[float] = _from_model(float, "the optimizer's peak learning rate (> 0)")
  init_checkpoint: str = _option('', "image ViT .npz or Hugging Face model directory to start "
                                 "from; '': the preset's initialisation")
  pixels: str = _option('auto', 'pixel scaling: auto | dataset | scenic | processor | a '
                        'preprocessor_config.json (models/checkpoints/pixel_preprocessing.py)')
  train_steps: int = _option(0, 'optimizer updates, exactly (the last epoch may be shorter); '
                             f'0: {STEPS_PER_TRAIN_VIDEO} per training video, within '
                             f'[{AUTO_STEPS[0]}, {AUTO_STEPS[1]}]')
  eval_steps: int = _option(4, 'eval-split batches the Trainer validates on per epoch (> 0)')
  steps_per_epoch: int = _option(50, 'optimizer updates between two validations (> 0)')
  distribution: str = _option('auto', 'tf.distribute strategy: auto | default | mirrored | '
                              'multi_worker | tpu')
  # Self-supervised VideoMAE pre-training (models/videomae/videomae_pretrain.py) of the encoder
  # on the train split's videos (plus --unlabeled-videos with --unlabeled-use pretraining); its
  # model starts the fine-tuning Trainer.
  pretrain: bool = _option(False, 'VideoMAE pre-training of the encoder before fine-tuning '
                           '(true/false)')
  unlabeled_videos: str = _option('', 'unlabelled footage, any layout, labels ignored: '
                                  'pseudo-labels (or FixMatch) in the Trainer, after any '
                                  '--pretrain (--unlabeled-use)')
  unlabeled_use: str = _option('self-training', "what --unlabeled-videos trains: "
                               "'self-training' (the Trainer's pseudo-labels or FixMatch, "
                               "after any --pretrain) or 'pretraining' (--pretrain's footage "
                               'beside the train split, nothing else)')
  unlabeled_clips_dir: str = _option('', "where --unlabeled-videos is ingested; '': "
                                     '<output-root>/unlabeled_clips')
  self_training_overrides: str = _option('{}', 'JSON object of SelfTrainingConfig fields '
                                         '(method pseudo_labels | fixmatch, threshold, '
                                         'teacher_fraction, …; models/trainer/'
                                         'self_training.py)')
  pretrain_steps: int = _option(0, "pre-training optimizer updates; 0: the fine-tuning's "
                                "on the labels (--train-steps, or the one from the data set; "
                                "with pseudo-labels the teacher's share)")
  pretrain_overrides: str = _option('{}', 'JSON object of PretrainConfig fields (mask_ratio, '
                                    'decoder_*, …)')
  tpu_address: str = _option('', "TPU to train on (--distribution tpu or auto); '': none")
  # Evaluation and blessing.
  accuracy_threshold: float = _option(0.8, 'bless only above this test accuracy (within '
                                      '[0, 1])')
  max_accuracy_drop: float = _option(0.0, '… and no worse than the last pushed model by more '
                                     'than this (within [0, 1])')
  min_test_examples_per_class: int = _option(5, '… and with at least this many test examples '
                                             'in every class (≥ 0)')
  min_test_fraction_per_class: float = _option(0.1, '… and at least this share of the test '
                                               'split in every class (within [0, 1])')
  min_slice_accuracy: float = _option(0.0, '… and at least this test accuracy in every source '
                                      'and duration-band slice (within [0, 1]; 0: off)')
  reviewed_clips: str = _option('', 'clips ingested from reviewed verdicts (`vivit-tfx ingest` '
                                'of the exported reviews): blessing also needs a gain over '
                                "the last pushed model on their test split; '': none")
  min_reviewed_gain: float = _option(0.01, '… the accuracy gain over the last pushed model '
                                     "that blessing needs on --reviewed-clips' test split "
                                     '(within [0, 1])')
  # Edge models (components/tflite_export.py).
  tflite: str = _option('', 'also TFLite models of the pushed model, beside it as '
                        '<version>.<float32|float16|int8>.tflite with their clip configs: '
                        "comma-separated none (float32), float16, int8; '': none")
  # Orchestration.
  enable_cache: bool = _option(True, 'reuse the outputs of components whose inputs and code are '
                               'unchanged (true/false)')
  beam_args: str = _option('--direct_num_workers=1', 'Beam options for StatisticsGen, Transform '
                           "and Evaluator, e.g. '--runner=DataflowRunner --project=…'")
  overwrite: bool = _option(False, "let `run` re-ingest over clips made from other settings "
                            "(only ingest's own files are replaced; true/false)")
  if_busy: str = _option('stop', 'another run holds --output-root: stop | wait for it')

  def __post_init__(self):
    # Plain data: the values given, None meaning "the preset's". Nothing is read here;
    # `resolve()` decides the rest.
    self._decided: Optional[Dict[str, Any]] = None  # once resolved: the settings given

  @property
  def resolved(self) -> bool:
    """Whether every model and clip setting holds its effective value (`resolve`)."""
    return self._decided is not None

  @property
  def _given(self) -> Dict[str, Any]:
    """The model and clip settings given (flag or constructor), not the preset's."""
    if self._decided is not None:
      return self._decided
    return {n: getattr(self, n) for n in MODEL_FIELDS + CLIP_FIELDS
            if getattr(self, n) is not None}

  def resolve(self) -> 'PipelineConfig':
    """A copy with every model and clip setting decided: the value given, else the preset's,
    else a pre-training or --init-checkpoint checkpoint's. The one step that reads presets
    and checkpoints; the CLI calls it once, and each method that needs the effective values
    calls it on a configuration built without it. A setting the model refuses stays as
    given, for `validate` to report."""
    if self.resolved:
      return self
    out = dataclasses.replace(self)
    out._decided = given = self._given  # kept, so that replace(preset=…) decides afresh
    out.sample_fps = given.get('sample_fps', hub_presets.sample_fps(self.preset))
    try:
      model = out.vivit_config()
    except (ValueError, TypeError):  # reported, with every other problem, by validate()
      out.frame_size = given.get('frame_size', out.image_size)
      return out
    for name in MODEL_FIELDS:
      setattr(out, name, getattr(model, name))
    out.frame_size = tuple(given.get('frame_size', out._stored_frame_size()))
    return out

  def _stored_frame_size(self) -> Tuple[int, int]:
    """The frame size ingestion stores: the model's, or the shortest edge a checkpoint's
    processor resizes to when that is larger (256 for a 224 crop), so Transform crops from the
    frame as transformers' processor sees it (a centre crop of ingestion's centre crop)."""
    size = tuple(self.image_size)
    if not self.init_checkpoint and self.pixels in ('auto', 'dataset', 'scenic'):
      return size
    try:
      edge = self.pixel_preprocessing().shortest_edge
    except ValueError:  # reported by validate()
      return size
    return (max(size[0], edge), max(size[1], edge)) if edge else size

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
    """`beam_args` as TFX's Beam components get them (`beam_options.for_tfx`)."""
    return beam_options.for_tfx(self.beam_args.split())

  def vivit_config(self):
    """The ViViTConfig handed to the Trainer: the preset, then --vivit-overrides, then the
    model flags given explicitly."""
    try:
      overrides: Dict[str, Any] = json.loads(self.vivit_overrides or '{}')
    except json.JSONDecodeError as e:
      raise ValueError(f'--vivit-overrides is not JSON: {e}') from None
    overrides.update({n: v for n, v in self._given.items() if n in MODEL_FIELDS})
    if self.init_checkpoint:
      overrides['init_checkpoint'] = absolute(self.init_checkpoint)
    elif self._pretrain_checkpoint():  # it brings its encoder; given settings win (and are
      # checked against its weights before any work, `checkpoint_checks`)
      from vivit_tfx.models.videomae import videomae_pretrain  # pylint: disable=g-import-not-at-top
      overrides = {**videomae_pretrain.checkpoint_settings(self._pretrain_checkpoint())[0],
                   **overrides}
    return vivit_preset(self.preset, **overrides)

  def _pretrain_checkpoint(self) -> str:
    """--pretrain-overrides' checkpoint when pre-training ('' otherwise, or when unreadable:
    `pretrain_config` says why)."""
    try:
      return self.pretrain and json_object(self.pretrain_overrides, '').get('checkpoint') or ''
    except ValueError:
      return ''

  @property
  def unlabeled_clips(self) -> str:
    """The ingested --unlabeled-videos ('' when none are given)."""
    if not self.unlabeled_videos:
      return ''
    return absolute(self.unlabeled_clips_dir or os.path.join(self.output_root, 'unlabeled_clips'))

  @property
  def videos_dir_is_default(self) -> bool:
    """--videos-dir left at the default: the only folder `run` may fill with synthetic videos,
    and existing clips made from another folder are this run's data."""
    return os.path.normpath(self.videos_dir) == os.path.normpath(DEFAULT_VIDEOS_DIR)

  def ingest_command(self, videos_dir: str) -> str:
    """The `vivit-tfx ingest` command that makes the clips this run wants from `videos_dir`."""
    config, defaults = self.resolve(), PipelineConfig().resolve()
    h, w = config.frame_size
    options = [f'--num-frames {config.num_frames}', f'--frame-size {h}x{w}']
    for name in ('layout', 'classes', 'positive_class', 'group_regex', 'sample_fps',
                 'max_duration_s'):
      if getattr(config, name) != getattr(defaults, name):
        options.append(f'--{flag_name(name)} {getattr(config, name)}')
    return (f'vivit-tfx ingest --input {videos_dir} --output {self.clips_dir} '
            + ' '.join(options) + ' --overwrite')

  def blessing_warnings(self, clips: Dict[str, Dict[str, int]], classes: Sequence[str],
                        test_share: float) -> List[str]:
    """`split_warnings` against this run's blessing minimums."""
    return split_warnings(clips, classes, self.min_test_examples_per_class,
                          self.min_test_fraction_per_class, test_share)

  def pretrain_config(self):
    """The PretrainConfig of the pre-training Trainer (defaults + --pretrain-overrides; a
    checkpoint there brings its decoder's settings; through a conv tokenizer the mask ratio is
    CONV_MASK_RATIO unless given)."""
    # local: the pre-training model loads TensorFlow; options are checked without it.
    from vivit_tfx.models.videomae.videomae_pretrain import PretrainConfig, with_checkpoint_decoder  # pylint: disable=g-import-not-at-top
    overrides = with_checkpoint_decoder(
        json_object(self.pretrain_overrides, '--pretrain-overrides'))
    if 'mask_ratio' not in overrides and self.vivit_config().tokenizer == 'conv':
      overrides = {**overrides, 'mask_ratio': CONV_MASK_RATIO}
    return PretrainConfig.from_dict(overrides)

  def self_training_config(self):
    """The SelfTrainingConfig of the Trainer (defaults + --self-training-overrides)."""
    # local: models/ loads TensorFlow; options are checked without it.
    from vivit_tfx.models.trainer.self_training import SelfTrainingConfig  # pylint: disable=g-import-not-at-top
    overrides = json_object(self.self_training_overrides, '--self-training-overrides')
    try:
      return SelfTrainingConfig.from_dict(overrides)
    except TypeError as e:
      raise ValueError(str(e)) from None

  def train_steps_for(self, train_videos: int) -> int:
    """--train-steps, or when 0 `auto_train_steps(train_videos)`; with pseudo-labels
    (--unlabeled-videos for self-training, method 'pseudo_labels') the teacher gets those and
    the student its share on top; FixMatch gets those."""
    if self.train_steps:
      return self.train_steps
    steps = auto_train_steps(train_videos)
    return self.self_training_config().total_steps(steps) if self.self_training() else steps

  def pretrain_steps_for(self, train_videos: int) -> int:
    """--pretrain-steps, or when 0 as many as the fine-tuning on the labels takes: with
    pseudo-labels the teacher's (of --train-steps, or `auto_train_steps`), not its student's;
    otherwise the Trainer's (`train_steps_for`)."""
    if self.pretrain_steps:
      return self.pretrain_steps
    total = self.train_steps_for(train_videos)
    plan = self.self_training_config() if self.self_training() else None
    return plan.teacher_steps(total) if plan and not plan.fixmatch else total

  def pretrain_footage(self) -> bool:
    """Whether --pretrain's pre-training also reads the unlabelled footage."""
    return bool(self.unlabeled_videos) and self.pretrain and self.unlabeled_use == 'pretraining'

  def self_training(self) -> bool:
    """Whether the Trainer self-trains on the unlabelled footage."""
    return bool(self.unlabeled_videos) and not self.pretrain_footage()

  def pixel_preprocessing(self):
    """The model's pixels (`--pixels`, `--init-checkpoint`) at the model's image size."""
    # local: it loads TensorFlow; options are checked without it.
    from vivit_tfx.models.checkpoints import pixel_preprocessing  # pylint: disable=g-import-not-at-top
    pixels = pixel_preprocessing.choose(self.pixels, absolute(self.init_checkpoint) if (
        self.init_checkpoint) else '')
    image_size = self.resolve().image_size
    return pixels.for_image_size(image_size) if image_size else pixels

  def validate(self) -> None:
    """Raises ConfigError listing every invalid setting, one line each, before data is
    touched: the shared option checks (`option_errors`), then the model's own checks on the
    settings that passed them (frames and image size against the tubelet, …)."""
    self.resolve()._validate()

  def _validate(self) -> None:
    values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    errors = option_errors(values)
    bad = {n for n in MODEL_FIELDS + CLIP_FIELDS if any(e.startswith(f'--{flag_name(n)} ')
                                                         for e in errors)}
    if not any(e.startswith('--vivit-overrides ') for e in errors):
      try:  # the preset's value stands in for a model setting already reported
        self.replace(**{n: None for n in bad}).vivit_config()
      except (ValueError, TypeError) as e:
        errors.append(f'model configuration: {e}')
      try:
        if 'image_size' not in bad:
          self.pixel_preprocessing()
      except ValueError as e:
        errors.append(f'--pixels {self.pixels}: {e}')
    if self.unlabeled_use == 'pretraining' and self.unlabeled_videos and not self.pretrain:
      errors.append('--unlabeled-use pretraining needs --pretrain (the footage would train '
                    'nothing)')
    if (self.pretrain_footage() and
        json_object(self.self_training_overrides, '--self-training-overrides')):
      errors.append('--self-training-overrides do not apply with --unlabeled-use pretraining '
                    '(the footage goes to the pre-training, the Trainer does not self-train)')
    if self.self_training() and not any(
        e.startswith('--self-training-overrides ') for e in errors):
      try:
        self.self_training_config()
      except ValueError as e:
        errors.append(str(e) if str(e).startswith('--') else f'--self-training-overrides: {e}')
    if self.unlabeled_videos and ingest_output.overlap(self.unlabeled_clips,
                                                       absolute(self.clips_dir)):
      errors.append(f'--unlabeled-clips-dir {self.unlabeled_clips} is --clips-dir '
                    f'{self.clips_dir} or nested with it: the unlabelled clips would replace '
                    'the labelled ones; choose another --unlabeled-clips-dir')
    if (self.reviewed_clips and '://' not in self.reviewed_clips and
        not os.path.isdir(os.path.join(self.reviewed_clips, 'test'))):
      errors.append(f'--reviewed-clips {self.reviewed_clips}: no test split (give the folder '
                    '`vivit-tfx ingest` wrote from the exported reviews)')
    if not errors and self.pretrain:
      try:
        # local: the pre-training model loads TensorFlow; options are checked without it.
        from vivit_tfx.models.videomae.videomae_pretrain import check_encoder  # pylint: disable=g-import-not-at-top
        check_encoder(self.vivit_config(), self.pretrain_config())
      except (ValueError, TypeError) as e:
        errors.append(f'pre-training configuration: {e}')
    if errors:
      raise ConfigError(errors)

  def clip_config(self):
    """The ingestion ClipConfig (T, frame size, sampling rule) of this pipeline."""
    config = self.resolve()
    return ClipConfig(num_frames=config.num_frames, frame_size=tuple(config.frame_size),
                      sample_fps=config.sample_fps, max_duration_s=config.max_duration_s)

  def model_clip_config(self, classes: Sequence[str], pixels: Dict[str, Any]
                        ) -> ModelClipConfig:
    """The clip contract the Trainer exports with the model (clip_config.json): the clip
    config, the K views, the pixels and the classes (label order; a binary set's positive
    class is label 1)."""
    return ModelClipConfig(
        **dataclasses.asdict(self.clip_config()), num_views=self.num_views, pixels=pixels,
        positive_class=self.positive_class).with_classes(classes)

  def dataset_config(self):
    """The DatasetConfig that ingest and VideoExampleGen read the videos with."""
    return layouts.DatasetConfig(layout=self.layout, classes=split_names(self.classes),
                         positive_class=self.positive_class, group_regex=self.group_regex)

  def model_summary(self) -> str:
    """The effective model configuration, printed once by `run`."""
    model = self.vivit_config()
    given = sorted(n for n in self._given if n in MODEL_FIELDS)
    fmt = lambda d: ', '.join(f'{k}={v}' for k, v in dataclasses.asdict(d).items())
    return (f'model: preset {self.preset} (overridden: {", ".join(given) or "nothing"}; '
            f'--vivit-overrides {self.vivit_overrides})\n'
            + self.checkpoint_summary(model) +
            f'  architecture: {fmt(model.architecture)}\n  recipe: {fmt(model.recipe)}\n'
            f'  pixels: {self.pixel_preprocessing().describe()}\n'
            f'  training: {self.training_summary()}')

  def checkpoint_summary(self, model) -> str:
    """'  --init-checkpoint DIR decided: field preset → checkpoint, …' for each architecture
    field the checkpoint set ('' without one)."""
    if not self.init_checkpoint:
      return ''
    plain = self.replace(init_checkpoint='').vivit_config().architecture
    decided = [f'{f.name} {getattr(plain, f.name)} → {getattr(model.architecture, f.name)}'
               for f in dataclasses.fields(plain)
               if f.name not in ('init_checkpoint', 'kernel_init')
               and getattr(plain, f.name) != getattr(model.architecture, f.name)]
    return (f'  --init-checkpoint {self.init_checkpoint} decided: '
            f'{", ".join(decided) or "nothing (the preset matches it)"}\n')

  def training_summary(self) -> str:
    """How long and on what the Trainer trains, in words."""
    steps = (f'{self.train_steps} steps (--train-steps)' if self.train_steps else
             f'{STEPS_PER_TRAIN_VIDEO} steps per training video, within {AUTO_STEPS[0]}-'
             f'{AUTO_STEPS[1]} (--train-steps 0; the number once the data is ingested)')
    before = (f'{self.pretrain_steps} masked-autoencoder pre-training steps' if
              self.pretrain_steps else 'as many masked-autoencoder pre-training steps')
    if self.pretrain_footage():
      return f'{steps}, after {before} on {self.unlabeled_videos} and the train split'
    pretrained = f', after {before} on the train split' if self.pretrain else ''
    if self.unlabeled_videos:
      plan = self.self_training_config()
      how = ('every step also on unlabelled clips' if plan.fixmatch else
             'the teacher the share teacher_fraction with its own learning-rate cycle, then '
             'the student the rest with another')
      return f'{steps}{pretrained}; {plan} on {self.unlabeled_videos}: {how}'
    return steps + pretrained

  def replace(self, **changes) -> 'PipelineConfig':
    """A copy with `changes`; the model and clip settings not given are the preset's again
    (replace(preset=…) decides them afresh), resolved if this configuration was."""
    given = {n: self._given.get(n) for n in MODEL_FIELDS + CLIP_FIELDS}
    out = dataclasses.replace(self, **{**given, **changes})
    return out.resolve() if self.resolved else out


def json_object(text: str, flag: str) -> Dict[str, Any]:
  """An option's JSON object ('' is {}); ValueError naming `flag` otherwise."""
  try:
    value = json.loads(text or '{}')
  except json.JSONDecodeError as e:
    raise ValueError(f'{flag} is not JSON: {e}') from None
  if not isinstance(value, dict):
    raise ValueError(f'{flag} is not a JSON object')
  return value


def absolute(path: str) -> str:
  """An absolute local path; URIs (gs://, s3://, …) are returned as they are."""
  return path if '://' in path else os.path.abspath(path)


def split_names(text: str) -> Tuple[str, ...]:
  """'A, B,C' → ('A', 'B', 'C')."""
  return tuple(n.strip() for n in text.split(',') if n.strip())


# value → is it valid, and what the option must be; one entry per option any command takes.
_RULES = {
    **{n: (lambda v: v > 0, 'must be positive') for n in (
        'num_frames', 'batch_size', 'eval_steps', 'steps_per_epoch',
        'synthetic_clips', 'num_views', 'clips_per_shard', 'max_duration_s', 'learning_rate')},
    **{n: (lambda v: min(v) > 0, 'must be positive') for n in ('frame_size', 'image_size')},
    **{n: (lambda v: v >= 0, 'must be ≥ 0') for n in (
        'sample_fps', 'workers', 'min_test_examples_per_class', 'train_steps',
        'pretrain_steps')},
    **{n: (lambda v: 0 <= v <= 1, 'must be within [0, 1]') for n in (
        'accuracy_threshold', 'max_accuracy_drop', 'min_test_fraction_per_class',
        'min_slice_accuracy', 'min_reviewed_gain')},
    **{n: (lambda v: 0 < v < 1, 'must be within (0, 1)') for n in ('train', 'eval', 'test')},
    'jpeg_quality': (lambda v: 1 <= v <= 100, 'must be within [1, 100]'),
    'tflite': (lambda v: set(split_names(v)) <= set(TFLITE_QUANTIZATIONS),
               f'must list some of {", ".join(TFLITE_QUANTIZATIONS)} (comma-separated)'),
}


def _choices(name: str) -> Optional[Tuple[str, ...]]:
  """The values an option with a fixed set takes (None: not such an option)."""
  if name == 'distribution':
    # local: models/trainer/distribution.py loads TensorFlow; options are checked without it.
    from vivit_tfx.models.trainer.distribution import STRATEGIES  # pylint: disable=g-import-not-at-top
    return STRATEGIES
  if name == 'layout':
    return layouts.LAYOUTS
  return {'input_mode': INPUT_MODES, 'if_busy': IF_BUSY, 'unlabeled_use': UNLABELED_USES}.get(name)


def option_errors(values: Dict[str, Any]) -> List[str]:
  """Every problem with these option values (by field name; absent or None: not checked), one
  line each: the one place `ingest`, `run`, `compile` and `report` validate their options."""
  errors = []
  given = {k: v for k, v in values.items() if v is not None}
  for name, value in given.items():
    if isinstance(value, float) and not math.isfinite(value):
      errors.append(f'--{flag_name(name)} must be a finite number, got {value}')
    elif name in _RULES and not _RULES[name][0](value):
      errors.append(f'--{flag_name(name)} {_RULES[name][1]}, got {show_value(value)}')
    elif _choices(name) is not None and value not in _choices(name):
      errors.append(f'--{flag_name(name)} {value!r} is not one of: {", ".join(_choices(name))}')
  fractions = [given[n] for n in ('train', 'eval', 'test') if n in given]
  if len(fractions) == 3 and all(map(math.isfinite, fractions)) and abs(
      sum(fractions) - 1) > 1e-6:
    errors.append(f'--train, --eval and --test must sum to 1, got {sum(fractions):g} '
                  f'({" + ".join(f"{f:g}" for f in fractions)})')
  errors += _class_errors(given.get('classes', ''), given.get('positive_class', ''))
  if given.get('group_regex'):
    try:
      re.compile(given['group_regex'])
    except re.error as e:
      errors.append(f'--group-regex {given["group_regex"]!r}: {e}')
  for name in ('vivit_overrides', 'pretrain_overrides', 'self_training_overrides'):
    if name not in given:
      continue
    try:
      value = json.loads(given[name] or '{}', parse_constant=_refuse_constant)
    except _NonFinite as e:
      errors.append(f'--{flag_name(name)} {e}')
      continue
    except ValueError as e:  # the other overrides' JSON errors: reported by validate()
      value = e
    if name == 'vivit_overrides' and not isinstance(value, dict):
      errors.append('--vivit-overrides is not a JSON object'
                    + (f': {value}' if isinstance(value, ValueError) else ''))
  return errors


class _NonFinite(ValueError):
  pass


def _refuse_constant(name: str):
  """json.loads's parse_constant: NaN and ±Infinity are refused in every JSON option."""
  raise _NonFinite(f'holds {name}: every number must be finite')


def _class_errors(text: str, positive: str) -> List[str]:
  names = split_names(text)
  if text.strip() and not names:
    return [f'--classes {text!r} names no class (give names such as Normal,Violence)']
  if len(set(names)) != len(names):
    twice = sorted({n for n in names if names.count(n) > 1})
    return [f'--classes {text!r} lists {", ".join(twice)} twice']
  if names and len(names) < 2:
    return [f'--classes {text!r} names one class; a classifier needs at least two']
  if positive and names and positive not in names:
    return [f'--positive-class {positive!r} is not one of --classes {", ".join(names)}']
  return []


def show_value(value) -> str:
  return 'x'.join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def min_test_per_class(min_examples: int, min_fraction: float, test_size: int) -> int:
  """Fewest test examples a class needs for a blessing: --min-test-examples-per-class, or
  --min-test-fraction-per-class of the test split, whichever is larger."""
  return max(min_examples, math.ceil(min_fraction * test_size))


def split_warnings(clips: Dict[str, Dict[str, int]], classes: Sequence[str],
                   min_examples: int, min_fraction: float, test_share: float) -> List[str]:
  """One line per class whose videos cannot pass the blessing's per-class minimums (or fill
  the three splits), saying how many more videos it needs and only the changes that can
  work. clips: split → class → videos."""
  splits = ('train', 'eval', 'test')
  need = min_test_per_class(min_examples, min_fraction, sum(clips.get('test', {}).values()))
  flag = ('--min-test-examples-per-class' if need <= min_examples else
          '--min-test-fraction-per-class')
  lines = []
  for name in classes:
    counts = [clips.get(s, {}).get(name, 0) for s in splits]
    total, test = sum(counts), counts[2]
    # each added video lands in the test split test_share of the time
    more = max(math.ceil((need - test) / test_share - 1e-9), 0)
    if 0 in counts:
      more = max(more, 3 - total)  # from 3 videos on, every split gets one
      if more:
        advice = f'add about {more} more video(s) of {name}' + (
            f' (for {need} test videos at --test {test_share:g})' if need else '')
      else:  # enough videos: the dataset's own split column or groups left a split empty
        empty = ', '.join(s for s, n in zip(splits, counts) if not n)
        advice = (f'enough videos, but the dataset places none in {empty} (a split column, '
                  'or groups of --group-regex)')
      lines.append(f'{name}: {total} video(s) split {"/".join(map(str, counts))} '
                   f'(train/eval/test): every split needs at least one; {advice}')
    elif test < need:
      # a larger test share works only while train and eval keep a video each
      share = math.ceil(100 * need / total) / 100
      larger = (f', ingest with --test {share:g} (and --train, --eval summing to '
                f'{1 - share:g})' if total - need >= 2 and test_share < share < 1 else '')
      lines.append(f'{name}: {test} test videos < {need} ({flag}): the model cannot be '
                   f'blessed; add about {more} more video(s) of {name} (at --test '
                   f'{test_share:g}){larger}, or lower {flag}')
  return lines


def parse_size(text: str) -> Tuple[int, int]:
  """'64' or '64x48' → (H, W); ValueError otherwise."""
  try:
    values = tuple(int(p) for p in text.lower().split('x'))
  except ValueError:
    raise ValueError(f'expected SIZE or HxW, got {text!r}') from None
  return values * 2 if len(values) == 1 else values[:2]
