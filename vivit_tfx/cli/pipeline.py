"""`vivit-tfx run` (LocalDagRunner) and `compile` (Kubeflow Pipelines v2)."""
from __future__ import annotations

import os
from typing import List, Tuple

from vivit_tfx.cli import config_options
from vivit_tfx.cli.common import UserError, one_line
from vivit_tfx.console import quiet as quiet_console
from vivit_tfx.kubeflow import options as kubeflow_options
from vivit_tfx.pipeline import configs, run_guard


def _cmd_run(args) -> int:
  try:
    config = config_options.from_args(args)
  except ValueError as e:
    raise UserError(str(e)) from None
  log = ''
  try:
    config.validate()
  except configs.ConfigError as e:
    raise UserError(str(e)) from None
  if config.init_checkpoint:
    # loads TensorFlow
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if not tf.io.gfile.exists(config.init_checkpoint):
      raise UserError(f'--init-checkpoint {config.init_checkpoint}: no such file or directory '
                      '(pass an image ViT .npz or a Hugging Face model directory; nothing is '
                      'downloaded)')
    from vivit_tfx.models.checkpoints import pixel_preprocessing  # pylint: disable=g-import-not-at-top
    if tf.io.gfile.isdir(config.init_checkpoint) and not pixel_preprocessing.is_hf_directory(
        config.init_checkpoint):
      raise UserError(f'--init-checkpoint {config.init_checkpoint}: a folder without config.json '
                      'is not a Hugging Face model directory')
  # loads TensorFlow and TFX: only once the options are known to be valid
  from vivit_tfx.data import prepare  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  try:
    _check_checkpoints(config)
    prepare.check_data(config)  # before anything is written: no logs, no lock
  except prepare.DataError as e:
    raise UserError(str(e)) from None
  print(config.model_summary())  # the effective model config, once
  try:
    with quiet_console(os.path.join(config.output_root, 'logs'), args.verbose) as log:
      summary = local_runner.run(config)
  except (prepare.DataError, run_guard.BusyError) as e:
    raise UserError(str(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise UserError(f'pipeline failed: {first} (details above and in {log}; metadata: '
                    f'{config.metadata_path})') from None
  print(summary.to_text())
  print(f'  log: {log}')
  return 0


def _check_checkpoints(config) -> None:
  """The checkpoints the run will load, loaded now as its Trainers will: a bad weights file is
  one line before any ingest, not a failed Trainer after seven components."""
  if not config.init_checkpoint and not (config.pretrain and config.pretrain_config().checkpoint):
    return
  # loads TensorFlow
  from vivit_tfx.models.checkpoints import checkpoint_checks  # pylint: disable=g-import-not-at-top
  try:
    checkpoint_checks.check(config.vivit_config(), configs.split_names(config.classes) or None,
                            config.pretrain_config() if config.pretrain else None)
  except ValueError as e:
    raise UserError(one_line(e)) from None


def _cmd_compile(args) -> int:
  # loads TFX
  from vivit_tfx.kubeflow import runner  # pylint: disable=g-import-not-at-top
  try:
    config, deployment = _compile_config(args)
    config.validate()
    path = runner.compile_pipeline(config, deployment)
  except ValueError as e:
    raise UserError(str(e)) from None
  print(f'compile: wrote the Kubeflow Pipelines v2 spec {path} (target {deployment.target})\n'
        f'  image {deployment.image}, pipeline root {config.pipeline_root}\n'
        f'  beam args: {config.beam_args}')
  note = kubeflow_options.precision_note(deployment, config.vivit_config().precision)
  if note:
    print(f'  precision: {note}')
  if deployment.target == 'kfp':
    print('  note: no baseline Resolver (open-source KFP does not run Resolver tasks): the '
          'Evaluator blesses on the absolute accuracy threshold only')
  local = _local_paths(config)
  if local:
    print("  note: this machine's paths are written into the spec as they are (pods read them "
          'only where the same path is mounted; pass URIs such as gs://… instead): '
          + ', '.join(f'{flag} {path}' for flag, path in local))
  if '<' in config.beam_args:
    print('  note: fill in the <…> values of the Beam preset with --beam-args '
          "'--project=… --region=…' (later values win)")
  return 0


def _local_paths(config) -> List[tuple]:
  """[(option, absolute local path)] of the data and output paths a compiled spec names."""
  data = ('--clips-dir', config.clips_dir) if config.input_mode == 'tfrecords' else (
      '--videos-dir', config.videos_dir)
  paths = [('--pipeline-root', config.pipeline_root), data, ('--serving-uri', config.serving_dir)]
  return [(flag, configs.absolute(path)) for flag, path in paths if '://' not in path]


def _compile_config(args) -> Tuple[configs.PipelineConfig, kubeflow_options.Deployment]:
  """The pipeline config and the deployment from `vivit-tfx compile` arguments."""
  config = config_options.from_args(args).replace(
      pipeline_root_uri=args.pipeline_root,
      beam_args=kubeflow_options.beam_args_for(args.beam_preset,
                              '' if args.beam_args == configs.PipelineConfig.beam_args
                              else args.beam_args))
  deployment = kubeflow_options.Deployment(
                          image=args.image, output=args.output, overwrite=args.overwrite,
                          target=args.target,
                          node_selector=kubeflow_options.parse_node_selector(args.node_selector),
                          accelerator_type=args.accelerator_type,
                          accelerator_count=args.accelerator_count if args.accelerator_type
                          else 0, trainer_cpu=args.trainer_cpu,
                          trainer_memory_gib=args.trainer_memory_gib,
                          **{f'{c}_{r}': getattr(args, f'{c}_{r}')
                             for c in ('evaluator', 'transform')
                             for r in ('accelerator_count', 'cpu', 'memory_gib')})
  return config, deployment


def _add_deployment_arguments(parser) -> None:
  """`compile`'s Kubeflow deployment options (kubeflow/options.py's kubeflow_options.Deployment)."""
  g = parser.add_argument_group('Kubeflow deployment')
  g.add_argument('--target', default='kfp', choices=kubeflow_options.TARGETS,
                 help='kfp: open-source Kubeflow Pipelines (Kubernetes resource names, node '
                 'selectors, no Resolver); vertex: Vertex AI Pipelines')
  g.add_argument('--image', required=True,
                 help='pipeline image built from vivit_tfx/kubeflow/Dockerfile')
  g.add_argument('--pipeline-root', required=True,
                 help='pipeline root URI the pods can reach (gs://, s3://, minio://, a path)')
  g.add_argument('--output', default=kubeflow_options.Deployment.output,
                 help='PipelineSpec YAML to write')
  g.add_argument('--overwrite', action='store_true',
                 help='replace --output even if it is not a pipeline spec compiled before')
  g.add_argument('--beam-preset', default='direct', choices=sorted(kubeflow_options.BEAM_PRESETS),
                 help='Beam runner for StatisticsGen/Transform/Evaluator (see README)')
  g.add_argument('--accelerator-type', default='',
                 help='Trainer accelerator: vertex: NVIDIA_TESLA_T4, NVIDIA_L4, TPU_V3, …; '
                 'kfp: a Kubernetes resource (nvidia.com/gpu) or a Vertex GPU name, mapped to '
                 'nvidia.com/gpu + the GKE node selector')
  g.add_argument('--accelerator-count', type=int, default=1,
                 help='accelerators of --accelerator-type for the Trainer pod (and the '
                 'PretrainTrainer pod with --pretrain)')
  g.add_argument('--node-selector', action='append', default=[], metavar='KEY=VALUE',
                 help='kfp: node selector label of the Trainer pod (repeatable), e.g. '
                 'cloud.google.com/gke-accelerator=nvidia-l4')
  g.add_argument('--evaluator-accelerator-count', type=int, default=-1,
                 help='accelerators (of --accelerator-type) for the Evaluator, which scores '
                 'the candidate and the baseline on every test video (default: 1 when '
                 '--accelerator-type is given; 0: CPU)')
  g.add_argument('--transform-accelerator-count', type=int, default=0,
                 help='accelerators for Transform, which decodes JPEGs on Beam (0: CPU)')
  for pod in ('trainer', 'evaluator', 'transform'):  # each heavy component's limits
    g.add_argument(f'--{pod}-cpu', type=float, default=0.0,
                   help=f'CPU limit of the {pod} pod, in cores (0: the cluster default)'
                   + ('; the PretrainTrainer pod gets the same' if pod == 'trainer' else ''))
    g.add_argument(f'--{pod}-memory-gib', type=float,
                   default=getattr(kubeflow_options.Deployment, f'{pod}_memory_gib'),
                   help=f'memory limit of the {pod} pod, in GiB (0: the cluster default'
                   + ('; -1: --trainer-memory-gib)' if pod == 'evaluator' else ')'))


def add_parsers(sub) -> None:
  p = sub.add_parser('run', help='main job: data if absent, then the whole TFX pipeline on '
                     'LocalDagRunner, then a summary')
  config_options.add_arguments(p)
  p.add_argument('--verbose', action='store_true',
                 help='also show library warnings (always in <output-root>/logs/run-*.log)')
  p.set_defaults(func=_cmd_run)

  p = sub.add_parser('compile', help='compile the pipeline to a Kubeflow Pipelines v2 spec')
  _add_deployment_arguments(p)
  config_options.add_arguments(
      p, exclude=('pipeline_root_uri', 'output_root', 'overwrite', 'if_busy'))
  p.set_defaults(func=_cmd_compile)
