"""`create_pipeline`: the one function that wires the TFX components (local and Kubeflow)."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import os
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from vivit_tfx import schemas
from vivit_tfx.audit import tfma_results
from vivit_tfx.components import fingerprint
from vivit_tfx.components.clip_transform import ClipTransform
from vivit_tfx.components.schema_import import ImportSchemaGen
from vivit_tfx.components.tflite_export import TFLiteExport
from vivit_tfx.components.validation_gate import ValidationGate
from vivit_tfx.components.video_example_gen import VideoExampleGen
from vivit_tfx.data import features, ingest, layouts
from vivit_tfx.pipeline import baseline as baseline_model
from vivit_tfx.pipeline import configs

SPLITS = ('train', 'eval', 'test')
PUSHER = 'Pusher'  # its newest push names the baseline (`baseline.LatestPushedModelStrategy`)
LAST_PUSHED, LAST_BLESSED = 'last-pushed', 'last-blessed'
BASELINES = (LAST_PUSHED, LAST_BLESSED)  # or '': none


def code_fingerprints(root: Optional[str] = None) -> Dict[str, str]:
  """Per component, the hash of the project code it loads (its cache key follows the code).

  root: the `vivit_tfx` folder to read (default: the imported package's).
  """
  modules = {
      'VideoExampleGen': ['vivit_tfx.components.video_example_gen.component'],
      'ValidationGate': ['vivit_tfx.components.validation_gate'],
      'Transform': ['vivit_tfx.components.clip_transform',
                    fingerprint.dotted_module(configs.PREPROCESSING_FN)],
      'Trainer': [fingerprint.dotted_module(configs.RUN_FN)],
      'PretrainTrainer': [fingerprint.dotted_module(configs.PRETRAIN_RUN_FN)],
      'TFLiteExport': ['vivit_tfx.components.tflite_export'],
  }
  return {name: fingerprint.code(m, root) for name, m in modules.items()}


def dataset_classes(config: configs.PipelineConfig) -> Tuple[str, ...]:
  """The class list in label order: the ingested clips' summary.json (tfrecords mode), else a
  scan of the videos folder, else --classes, else the RLVS layout's two classes."""
  classes = _ingest_summary(config).classes
  if classes:
    return tuple(classes)
  if '://' not in config.videos_dir and os.path.exists(config.videos_dir):
    return layouts.scan(config.videos_dir, config.dataset_config()).classes
  return configs.split_names(config.classes) or layouts.RLVS_CLASSES


# Slices the accuracy threshold and the drop against the baseline (the last pushed model)
# apply to: the whole test split, each container, each class (a MetricConfig's own
# `threshold` would apply to every slice, the source and duration-band ones too).
GATED_SLICES = (tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.CONTAINER]),
                tfma.SlicingSpec(feature_keys=[features.LABEL]))
# Slices by where a video comes from and how long it is: --min-slice-accuracy applies to these.
SOURCE_SLICES = tuple(tfma.SlicingSpec(feature_keys=[f]) for f in features.SLICE_FEATURES)


def eval_config(config: configs.PipelineConfig, n_classes: int = 2) -> tfma.EvalConfig:
  """TFMA, overall and per container/label/source/duration band. Two classes: counts, binary
  accuracy, AUC, precision/recall, confusion matrix and calibration plots. More: accuracy,
  per-class precision/recall (one-vs-rest) and the multi-class confusion matrix. Blessing needs
  accuracy above the threshold and no worse than the last pushed model (overall, per
  container and class), and with --min-slice-accuracy that accuracy in every source and
  duration-band slice."""
  binary = n_classes == 2
  gated = tfma.PerSliceMetricThreshold(
      slicing_specs=list(GATED_SLICES), threshold=tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(
              lower_bound={'value': config.accuracy_threshold}),
          # Ignored on the first run, when there is no baseline yet.
          change_threshold=tfma.GenericChangeThreshold(
              direction=tfma.MetricDirection.HIGHER_IS_BETTER,
              absolute={'value': -(config.max_accuracy_drop + 1e-10)})))
  per_source = [tfma.PerSliceMetricThreshold(
      slicing_specs=list(SOURCE_SLICES), threshold=tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(
              lower_bound={'value': config.min_slice_accuracy})))
                ] if config.min_slice_accuracy > 0 else []
  accuracy = tfma.MetricConfig(
      class_name='BinaryAccuracy' if binary else 'SparseCategoricalAccuracy',
      per_slice_thresholds=[gated, *per_source])
  counts = examples_per_class(config, n_classes)
  if binary:
    metrics_specs = [tfma.MetricsSpec(metrics=[accuracy, counts] + [
        tfma.MetricConfig(class_name=name) for name in (
            'AUC', 'Precision', 'Recall', 'MeanLabel', 'MeanPrediction',
            'ConfusionMatrixPlot', 'CalibrationPlot')])]
  else:
    metrics_specs = [
        tfma.MetricsSpec(metrics=[accuracy, counts, tfma.MetricConfig(
            class_name='MultiClassConfusionMatrixPlot')]),
        # Per class by argmax: top_k 1 sets every score but the top one to -inf, and a video
        # counts as predicted when its score is > 0 (TFMA's default -inf threshold counts
        # every video for a class that is never the top one), so these agree with the
        # confusion matrix and the accuracy.
        tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name=name,
                                                    config='{"top_k": 1, "thresholds": [0.0]}')
                                  for name in ('Precision', 'Recall')],
                         binarize=tfma.BinarizationOptions(class_ids={'values': list(
                             range(n_classes))}))]
  return tfma.EvalConfig(model_specs=_model_specs(),
                         slicing_specs=[*GATED_SLICES, *SOURCE_SLICES],
                         metrics_specs=metrics_specs)


def _model_specs() -> List[tfma.ModelSpec]:
  # The label passes through untransformed: no `transform_features` (which would decode
  # every test clip once more and parse the fixed frame slots of the model's own records).
  return [tfma.ModelSpec(signature_name='serving_default', label_key=features.LABEL)]


def reviewed_eval_config(config: configs.PipelineConfig, n_classes: int = 2) -> tfma.EvalConfig:
  """TFMA on the held-out part (test split) of the reviewed clips: blessing needs at least
  one, and once a model was pushed an accuracy gain over it of --min-reviewed-gain."""
  gain = tfma.MetricConfig(
      class_name='BinaryAccuracy' if n_classes == 2 else 'SparseCategoricalAccuracy',
      threshold=tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
          direction=tfma.MetricDirection.HIGHER_IS_BETTER,
          absolute={'value': config.min_reviewed_gain - 1e-10})))
  count = tfma.MetricConfig(class_name='ExampleCount', threshold=tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={'value': 0.5})))
  return tfma.EvalConfig(model_specs=_model_specs(), slicing_specs=[tfma.SlicingSpec()],
                         metrics_specs=[tfma.MetricsSpec(metrics=[gain, count])])


def _videos_pattern(config: configs.PipelineConfig) -> str:
  """A glob (relative to videos_dir) matching the videos, for ExampleGen's input fingerprint."""
  if '://' in config.videos_dir or not os.path.exists(config.videos_dir):
    return '*/*'
  found = layouts.scan(config.videos_dir, config.dataset_config())
  if found.layout == 'csv':
    return os.path.basename(layouts.csv_file(config.videos_dir))
  depths = collections.Counter(c.path.count(os.sep) for c in found.candidates)
  return '*/' * (depths.most_common(1)[0][0] if depths else 1) + '*'


def min_test_examples_per_class(config: configs.PipelineConfig) -> int:
  """Fewest test examples a class needs for a blessing: the configured count, or the
  configured share of the test split when ingest recorded its size, whichever is larger."""
  test_size = _ingest_summary(config).videos('test')
  return configs.min_test_per_class(config.min_test_examples_per_class,
                                    config.min_test_fraction_per_class, test_size)


def _ingest_summary(config: configs.PipelineConfig) -> ingest.IngestSummary:
  """The ingested clips' summary (tfrecords mode), or an empty one when there is none to
  read."""
  path = os.path.join(config.clips_dir, ingest.SUMMARY)
  try:
    if config.input_mode == 'tfrecords' and tf.io.gfile.exists(path):
      return ingest.IngestSummary.read(path)
  except tf.errors.OpError:  # a remote store not reachable from here (compiling for Kubeflow)
    pass
  return ingest.IngestSummary()


def examples_per_class(config: configs.PipelineConfig, n_classes: int) -> tfma.MetricConfig:
  """ExampleCount, with the rule that a degenerate test split never blesses: every class slice
  must hold enough examples (a class with none is a missing slice, which fails too)."""
  threshold = tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
      lower_bound={'value': min_test_examples_per_class(config) - 0.5}))
  return tfma.MetricConfig(class_name='ExampleCount', per_slice_thresholds=[
      tfma.PerSliceMetricThreshold(
          slicing_specs=[tfma.SlicingSpec(feature_values={features.LABEL: str(label)})],
          threshold=threshold) for label in range(n_classes)])


def unlabeled_input(config: configs.PipelineConfig) -> dict:
  """The pre-training Trainer's view of the ingested --unlabeled-videos: a file pattern, the
  video counts (sampling weights) and a hash of the ingest manifest (the cache key follows
  the footage); {} when none are given."""
  root = config.unlabeled_clips
  if not root or not tf.io.gfile.exists(os.path.join(root, ingest.SUMMARY)):
    return {}
  videos = ingest.IngestSummary.read(root).videos('train')
  with tf.io.gfile.GFile(os.path.join(root, ingest.MANIFEST), 'rb') as f:
    manifest = hashlib.sha256(f.read()).hexdigest()[:16]
  labelled = _ingest_summary(config).videos('train')
  return {'pattern': os.path.join(root, 'train', '*.tfrecord'), 'videos': videos,
          'labelled_videos': labelled, 'manifest_sha256': manifest}


def train_steps(config: configs.PipelineConfig) -> int:
  """The Trainer's updates: --train-steps, or when 0 as many as the ingested train split's
  size asks for (`configs.auto_train_steps`)."""
  videos = _ingest_summary(config).videos('train')
  return config.train_steps_for(videos)


def pretrain_steps(config: configs.PipelineConfig) -> int:
  """The pre-training Trainer's updates: --pretrain-steps, or when 0 the fine-tuning's on the
  labels (`configs.PipelineConfig.pretrain_steps_for`)."""
  return config.pretrain_steps_for(_ingest_summary(config).videos('train'))


def _example_gen(config: configs.PipelineConfig, code: str = ''):
  if config.input_mode == 'videos':
    # Raw videos read on Beam, split after decoding exactly as `vivit-tfx ingest` splits.
    videos = configs.absolute(config.videos_dir)
    if os.path.isfile(videos):  # a CSV file: its folder is the input (one CSV there)
      videos = os.path.dirname(videos)
    return VideoExampleGen(
        input_base=videos,
        input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(
            name='all', pattern=_videos_pattern(config))]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(
            splits=[tfx.proto.SplitConfig.Split(name=s, hash_buckets=1) for s in SPLITS])),
        custom_config={'clip': dataclasses.asdict(config.clip_config()),
                       'dataset': dataclasses.asdict(config.dataset_config()),
                       'splits': dataclasses.asdict(ingest.SplitConfig()), 'code': code})
  if config.input_mode != 'tfrecords':
    raise ValueError(f'input_mode {config.input_mode!r} is not one of {configs.INPUT_MODES}')
  # Split folders written by `vivit-tfx ingest` (stratified, by video).
  return tfx.components.ImportExampleGen(
      input_base=configs.absolute(config.clips_dir),
      input_config=tfx.proto.Input(splits=[
          tfx.proto.Input.Split(name=s, pattern=f'{s}/*') for s in SPLITS]))


def baseline_resolver(baseline: str) -> tfx.dsl.Resolver:
  """The Resolver of the Evaluators' baseline.

  LAST_PUSHED: the model in service, behind the Pusher's newest push. A model blessed on the
  test split but refused on the reviewed clips was never pushed and never becomes the baseline.
  LAST_BLESSED: the newest model the test split's Evaluator blessed, for Vertex AI, whose
  compiler knows only TFX's own strategies; with --reviewed-clips that may be a model the
  reviewed clips held back.
  """
  if baseline == LAST_PUSHED:
    return tfx.dsl.Resolver(
        strategy_class=baseline_model.LatestPushedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        pushed_model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.PushedModel,
                                     producer_component_id=PUSHER, output_key='pushed_model'),
    ).with_id('latest_pushed_model_resolver')
  if baseline == LAST_BLESSED:
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                       producer_component_id=tfma_results.EVALUATOR,
                                       output_key='blessing'),
    ).with_id('latest_blessed_model_resolver')
  raise ValueError(f'baseline {baseline!r} is not one of {BASELINES}')


def create_pipeline(config: configs.PipelineConfig,
                    metadata_connection_config=None,
                    extra_components: Optional[List] = None,
                    baseline: str = LAST_PUSHED) -> tfx.dsl.Pipeline:
  """ExampleGen → StatisticsGen → ImportSchemaGen → ExampleValidator → gate → Transform →
  [PretrainTrainer →] Trainer → Resolver + Evaluator [+ ReviewedExampleGen → ReviewedEvaluator,
  with --reviewed-clips] → Pusher [→ TFLiteExport, with --tflite].

  baseline: which model the Evaluators compare the candidate with (`baseline_resolver`); ''
  leaves the Resolver out (open-source KFP cannot run Resolver tasks): the Evaluator then
  applies only the absolute accuracy threshold.
  """
  config = config.resolve()
  classes = dataset_classes(config)
  vivit = config.vivit_config().replace(n_classes=len(classes))
  pixels = config.pixel_preprocessing().to_dict()  # the checkpoint's or the dataset's
  code = code_fingerprints()

  # Brings clip tf.Examples (JPEG frames + label + metadata) into the pipeline, split.
  example_gen = _example_gen(config, code['VideoExampleGen'])

  # Computes statistics over the clips for visualisation and validation.
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])

  # Imports the curated schema (shape of `frames` fixed to the configured clip length); the
  # cache key includes the file's content.
  schema_file = config.schema_file or schemas.for_clips(
      config.clip_config().stored_frames, len(classes),
      os.path.join(config.output_root, 'schemas'))
  schema_gen = ImportSchemaGen(schema_file=configs.absolute(schema_file))

  # Detects anomalies of the clips against the schema ...
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])

  # ... and stops the run on any, before Transform and Trainer.
  validation_gate = ValidationGate(schema=schema_gen.outputs['schema'],
                                   statistics=statistics_gen.outputs['statistics'],
                                   anomalies=example_validator.outputs['anomalies'],
                                   code=code['ValidationGate'])
  schema = validation_gate.outputs['validated_schema']

  # Decodes and normalises clips as `pixels` says (a checkpoint's processor, [-1, 1], or the
  # per-channel mean/std over the train split, on Beam). Not materialised: the Trainer applies the transform graph to the JPEG records on the fly.
  # Batches are bounded so memory does not grow with the dataset.
  transform = ClipTransform(
      examples=example_gen.outputs['examples'], schema=schema,
      preprocessing_fn=configs.PREPROCESSING_FN, materialize=False, disable_statistics=True,
      custom_config={'image_size': list(config.image_size), 'num_frames': config.num_frames,
                     'pixels': pixels, 'code': code['Transform']},
  ).with_id('Transform')

  # Masked-autoencoder pre-training of the encoder (VideoMAE; through a conv stem, masked
  # convolutions) on the train split (labels ignored), plus the unlabelled footage with
  # --unlabeled-use pretraining; its model is the fine-tuning Trainer's base_model.
  pretrainer = tfx.components.Trainer(
      run_fn=configs.PRETRAIN_RUN_FN,
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema,
      train_args=tfx.proto.TrainArgs(splits=['train'], num_steps=pretrain_steps(config)),
      eval_args=tfx.proto.EvalArgs(splits=['eval'], num_steps=config.eval_steps),
      custom_config={'vivit': vivit.to_dict(), 'pretrain': config.pretrain_config().to_dict(),
                     'unlabeled': unlabeled_input(config) if config.pretrain_footage() else {},
                     'distribution': config.distribution, 'tpu_address': config.tpu_address,
                     'steps_per_epoch': config.steps_per_epoch,
                     'code': code['PretrainTrainer']},
  ).with_id('PretrainTrainer') if config.pretrain else None

  # Trains ViViT with the config passed as hyperparameters.
  trainer = tfx.components.Trainer(
      run_fn=configs.RUN_FN,
      base_model=pretrainer.outputs['model'] if pretrainer else None,
      examples=example_gen.outputs['examples'],
      transform_graph=transform.outputs['transform_graph'],
      schema=schema,
      train_args=tfx.proto.TrainArgs(splits=['train'], num_steps=train_steps(config)),
      eval_args=tfx.proto.EvalArgs(splits=['eval'], num_steps=config.eval_steps),
      custom_config={'vivit': vivit.to_dict(), 'distribution': config.distribution,
                     # --unlabeled-videos (after any --pretrain): FixMatch or pseudo-labels
                     **({'unlabeled': unlabeled_input(config),
                         'self_training': config.self_training_config().to_dict()}
                        if config.self_training() else {}),
                     # what the pushed model's clients are told (clip_config.json)
                     'clip': config.model_clip_config(classes, pixels).to_dict(),
                     'tpu_address': config.tpu_address,
                     # The classes travel with the data: run_fn reads them there at run time.
                     'clips_summary': (f'{configs.absolute(config.clips_dir)}/{ingest.SUMMARY}'
                                       if config.input_mode == 'tfrecords' else ''),
                     'steps_per_epoch': config.steps_per_epoch, 'code': code['Trainer']})

  # Finds the baseline the candidate must not fall below (`baseline_resolver`).
  model_resolver = baseline_resolver(baseline) if baseline else None

  # Evaluates the candidate on the untouched test split with TFMA and blesses it or not.
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs['examples'], model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'] if baseline else None,
      eval_config=eval_config(config, len(classes)),
      example_splits=['test']).with_id(tfma_results.EVALUATOR)

  # With --reviewed-clips: the same comparison on the held-out reviewed clips, which the
  # candidate must do better on than the last pushed model.
  # (One input split would be re-split into train/eval by default: all of it stays 'test'.)
  reviewed_gen = tfx.components.ImportExampleGen(
      input_base=configs.absolute(config.reviewed_clips),
      input_config=tfx.proto.Input(splits=[tfx.proto.Input.Split(name='test',
                                                                 pattern='test/*')]),
      output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
          tfx.proto.SplitConfig.Split(name='test', hash_buckets=1)])),
  ).with_id('ReviewedExampleGen') if config.reviewed_clips else None
  reviewed_evaluator = tfx.components.Evaluator(
      examples=reviewed_gen.outputs['examples'], model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'] if baseline else None,
      eval_config=reviewed_eval_config(config, len(classes)),
      example_splits=['test'],
  ).with_id(tfma_results.REVIEWED_EVALUATOR) if reviewed_gen else None

  # Pushes a blessed model to <serving_dir>/<model_name>/<version>/ for TF Serving (with
  # reviewed clips, only when it also gained on them).
  with (tfx.dsl.Cond(reviewed_evaluator.outputs['blessing'].future()[0].custom_property(
      'blessed') == 1) if reviewed_evaluator else contextlib.nullcontext()):
    pusher = tfx.components.Pusher(
        model=trainer.outputs['model'], model_blessing=evaluator.outputs['blessing'],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=f'{config.serving_dir}/{config.model_name}')),
    ).with_id(PUSHER)
    # With --tflite: the pushed model as TFLite models beside it, int8 calibrated on the train
    # split; its own artifact, whose lineage names this Model, its push and those examples.
    tflite = TFLiteExport(
        model=trainer.outputs['model'], pushed_model=pusher.outputs['pushed_model'],
        examples=example_gen.outputs['examples'], quantize=config.tflite,
        code=code['TFLiteExport']) if config.tflite else None

  components = [c for c in (example_gen, statistics_gen, schema_gen, example_validator,
                            validation_gate, transform, pretrainer, trainer, model_resolver,
                            evaluator, reviewed_gen, reviewed_evaluator,
                            pusher, tflite) if c is not None] + list(extra_components or [])
  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=config.beam_pipeline_args)
