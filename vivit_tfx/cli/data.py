"""`vivit-tfx make-synthetic` and `ingest`: videos in, clip records out."""
from __future__ import annotations

import dataclasses
import os

from vivit_tfx.cli import config_options
from vivit_tfx.cli.common import UserError, finite_float, labels
from vivit_tfx.data import clip_config
from vivit_tfx.pipeline import configs


def _cmd_make_synthetic(args) -> int:
  # loads TensorFlow
  from vivit_tfx.data import synthetic  # pylint: disable=g-import-not-at-top
  target = args.long or args.output
  if os.path.exists(target) and (not os.path.isdir(target) or os.listdir(target)):
    raise UserError(f'{target}: already exists{" and is not empty" if os.path.isdir(target) else ""}'
                    '; make-synthetic writes only to a new path or an empty folder')
  if args.long:
    os.makedirs(os.path.dirname(os.path.abspath(args.long)) or '.', exist_ok=True)
    truth = synthetic.long_video(args.long, args.segments, segment_s=args.segment_s, seed=args.seed)
    print(f'make-synthetic: wrote {args.long} ({len(truth)} segments of {args.segment_s} s, '
          f'truth in {args.long}.segments.json)')
    return 0
  config = (synthetic.hard_config(args.num_clips, args.seed) if args.difficulty == 'hard' else
            synthetic.SyntheticConfig(num_clips=args.num_clips, seed=args.seed))
  paths = synthetic.generate(args.output, config, workers=args.workers)
  if args.with_bad_inputs:
    bad = synthetic.add_bad_inputs(args.output)
    print(f'added {len(bad)} hostile inputs: ' + ', '.join(sorted(bad.values())))
  print(f'make-synthetic: wrote {len(paths)} videos to {args.output}')
  return 0


def _cmd_ingest(args) -> int:
  # loads OpenCV
  from vivit_tfx.data import ingest, ingest_output  # pylint: disable=g-import-not-at-top
  unlabeled = args.layout == 'unlabeled'  # pre-training footage: all to train, no splits
  errors = configs.option_errors({k: v for k, v in vars(args).items()
                                  if not (unlabeled and k in ('train', 'eval', 'test'))})
  if errors:
    raise UserError('\n'.join(errors))
  # the options `run` shares: the clips and the dataset as the pipeline's own builders make them
  config = configs.PipelineConfig(**{n: getattr(args, n) for n in config_options.INGEST_OPTIONS}
                                  ).resolve()
  try:
    summary = ingest_output.ingest_into(
        args.input, args.output, overwrite=args.overwrite, workers=args.workers,
        clip=dataclasses.replace(config.clip_config(), jpeg_quality=args.jpeg_quality),
        splits=ingest.TRAIN_ONLY if unlabeled else ingest.SplitConfig(
            train=args.train, eval=args.eval, test=args.test, seed=args.seed),
        dataset=config.dataset_config(), clips_per_shard=args.clips_per_shard)
  except ingest_output.NothingUsable as e:
    print(e.summary.to_text())
    raise UserError(f'{e}; {args.output} was left as it was') from None
  except (FileNotFoundError, ValueError) as e:
    raise UserError(str(e)) from None
  print(summary.to_text())
  print(f'  manifest: {os.path.join(args.output, ingest.MANIFEST)}')
  blessing = configs.PipelineConfig  # `run`'s default blessing minimums
  for line in [] if unlabeled else configs.split_warnings(summary.clips, summary.classes,
                                     blessing.min_test_examples_per_class,
                                     blessing.min_test_fraction_per_class, args.test):
    print(f'  warning: {line}')
  return 0


def add_parsers(sub) -> None:
  p = sub.add_parser('make-synthetic', help='write the synthetic labelled video dataset')
  p.add_argument('--output', default='data/synthetic_videos', help='RLVS-layout folder to write')
  p.add_argument('--num-clips', type=int, default=200, help='videos to write, half of each '
                 'class (> 0)')
  p.add_argument('--seed', type=int, default=0, help='random seed: the same seed writes the '
                 'same videos')
  p.add_argument('--workers', type=int, default=0, help='processes (0: one per core)')
  p.add_argument('--difficulty', default='default', choices=['default', 'hard'],
                 help='hard: 2-30 s, camera shake, clutter, light changes, compression noise, '
                 'fast non-violent motion')
  p.add_argument('--with-bad-inputs', action='store_true',
                 help='also write corrupt and non-video files (to see how ingest copes)')
  p.add_argument('--long', default='', metavar='PATH.mp4',
                 help='instead: one long video of violent/non-violent segments')
  p.add_argument('--segments', type=labels, default='0101001',
                 help='labels of the segments, e.g. 0110 (1 = violent)')
  p.add_argument('--segment-s', type=finite_float, default=4.0,
                 help='--long: seconds per segment (> 0)')
  p.set_defaults(func=_cmd_make_synthetic)

  p = sub.add_parser('ingest', help='video folder → clip TFRecords per split + manifest')
  p.add_argument('--input', default='data/synthetic_videos',
                 help='folder of videos (see --layout), or a CSV file for --layout csv '
                 "(default: 'data/synthetic_videos')")
  p.add_argument('--output', default='data/clips',
                 help="folder for split TFRecords (default: 'data/clips')")
  clip = clip_config.ClipConfig()  # the defaults: the default pipeline's clips
  config_options.add_arguments(p, only=config_options.INGEST_OPTIONS, defaults=dict(
      num_frames=clip.num_frames, frame_size=clip.frame_size, sample_fps=clip.sample_fps),
      title='clip and dataset options (the same as `run`\'s)')
  p.add_argument('--jpeg-quality', type=int, default=clip.jpeg_quality,
                 help=f'JPEG quality of the stored frames (1-100) (default: {clip.jpeg_quality})')
  split = dict(train=0.7, eval=0.15, test=0.15, seed=42)  # ingest.SplitConfig() (loads OpenCV)
  p.add_argument('--train', type=float, default=split['train'], help="share of each class's "
                 'videos the Trainer trains on; --train, --eval and --test each within (0, 1), '
                 f"summing to 1 (default: {split['train']})")
  p.add_argument('--eval', type=float, default=split['eval'], help="share of each class's "
                 f"videos the Trainer validates on, within (0, 1) (default: {split['eval']})")
  p.add_argument('--test', type=float, default=split['test'], help="share of each class's "
                 f"videos the Evaluator blesses on, within (0, 1) (default: {split['test']})")
  p.add_argument('--seed', type=int, default=split['seed'],
                 help=f"split seed: the same seed, the same splits (default: {split['seed']})")
  p.add_argument('--clips-per-shard', type=int, default=256,
                 help='clips per TFRecord file (> 0) (default: 256)')
  p.add_argument('--workers', type=int, default=0,
                 help='processes (0: one per core) (default: 0)')
  p.add_argument('--overwrite', action='store_true',
                 help='replace an earlier ingest output made from other input or settings '
                 '(a folder ingest did not make, or files in it that ingest did not write, are '
                 'never replaced)')
  p.set_defaults(func=_cmd_ingest)
