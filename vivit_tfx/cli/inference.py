"""`vivit-tfx predict`, `attention`, `export` and `checkpoint`: a model applied to files."""
from __future__ import annotations

import dataclasses
import sys
from typing import List

from vivit_tfx.cli.common import (UserError, accounted, add_model_arguments,
                                  add_overwrite_argument, add_serving_arguments, each,
                                  finite_float, chosen_model, one_line, positive_int, print_json,
                                  quiet, refuse_non_videos)


def _cmd_predict(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import predict  # pylint: disable=g-import-not-at-top
  quiet()
  inputs = list(args.videos)
  videos, skipped = refuse_non_videos(inputs)
  if not videos:
    accounted(inputs, skipped)
    raise UserError('no video file among the inputs')
  try:
    model_dir = chosen_model(args, tflite=not args.rest_request)
    if args.rest_request:
      print_json(predict.rest_request(videos[0], model_dir))
      return 0
    if args.timeline:
      return accounted(inputs, skipped + _timelines(args, videos, model_dir))
    results = predict.predict(videos, model_dir)
  except ValueError as e:
    raise UserError(str(e)) from None
  if args.json:
    print_json({'model': model_dir, 'predictions': [dataclasses.asdict(r) for r in results]})
  else:
    print(f'model: {model_dir}')
    for r in results:
      print(r.to_text())
  return accounted(inputs, skipped + [r.path for r in results if r.error is not None])


def _timelines(args, videos: List[str], model_dir: str) -> List[str]:
  """`predict --timeline` over each video (going on after a bad one); returns those skipped."""
  # loads TensorFlow
  from vivit_tfx.inference import predict, timeline  # pylint: disable=g-import-not-at-top
  timeline.window_s_for(predict.clip_config_of(model_dir), args.window_s)  # refused: stop here
  failed = []
  for video, result in each(videos, lambda video, stem: timeline.run(
      video, model_dir, args.out_dir, args.window_s, args.stride_s, args.threshold,
      overwrite=args.overwrite, stem=stem), failed):
    if args.json:
      print_json(result)
      continue
    print(f'{video}: {len(result["windows"])} windows, {len(result["segments"])} '
          f'violent segment(s) ≥ {args.threshold}')
    for seg in result['segments']:
      print(f'  {seg["start_s"]:8.1f} s – {seg["end_s"]:8.1f} s  peak {seg["peak_score"]:.3f}')
    print(f'  timeline: {result["png"]}\n  segments: {result["json"]}')
  return failed


def _cmd_attention(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import explain  # pylint: disable=g-import-not-at-top
  quiet()
  inputs = list(args.videos)
  videos, skipped = refuse_non_videos(inputs)
  try:
    model_dir = chosen_model(args)
  except ValueError as e:
    raise UserError(str(e)) from None
  for video, out in each(videos, lambda video, stem: explain.render(
      video, model_dir, args.out_dir, args.method, args.overwrite, stem=stem), skipped):
    print(f'{video}: token grid {out["grid"]}\n  strip: {out["png"]}\n  gif: {out["gif"]}')
  return accounted(inputs, skipped)


def _cmd_export(args) -> int:
  # loads TensorFlow
  from vivit_tfx.inference import tflite_export  # pylint: disable=g-import-not-at-top
  quiet()
  try:
    model_dir = chosen_model(args)
    out_dir = args.out_dir or tflite_export.default_out_dir(model_dir)
    done = tflite_export.export_tflite(
        model_dir, out_dir, list(dict.fromkeys(args.quantize)), args.clips_dir,
        args.calibration_clips, args.overwrite, log=lambda m: print(m, file=sys.stderr),
        int8=args.int8)
  except (ValueError, OSError) as e:
    raise UserError(one_line(e)) from None
  print(f'model: {model_dir}')
  for e in done:
    print(f'  {e.quantize}: {e.path} ({e.bytes / 2**20:.2f} MiB), clip config {e.clip_config}')
  return 0


def _cmd_checkpoint(args) -> int:
  # loads TensorFlow
  from vivit_tfx.models.checkpoints import hf_export, pixel_preprocessing  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.checkpoints.vit_checkpoint import CheckpointMismatch  # pylint: disable=g-import-not-at-top
  quiet()
  try:
    if args.action == 'inspect':
      print('\n'.join(hf_export.inspect(args.path)))
      return 0
    if not args.output:
      raise UserError('checkpoint export needs --output DIR')
    clip = hf_export.export(args.path, args.output, args.num_frames)
  except (CheckpointMismatch, pixel_preprocessing.PreprocessorConfigError, OSError) as e:
    raise UserError(one_line(e)) from None
  print(f"exported: {args.output} ({clip.provenance['hf_family']}, T={clip.num_frames}, "
        f"{len(clip.class_names)} labels; signatures serving_default, pixels)")
  return 0


def add_parsers(sub) -> None:
  p = sub.add_parser('predict', help='classify video files with the pushed model (goes on '
                     'after a bad file; exit 1 if any input was skipped)')
  add_model_arguments(p)
  p.add_argument('--json', action='store_true', help='print JSON instead of text')
  p.add_argument('--rest-request', action='store_true',
                 help="print the TF Serving REST :predict body for the first video")
  p.add_argument('--timeline', action='store_true',
                 help='score sliding windows over each (long) video: PNG + JSON segments')
  p.add_argument('--window-s', type=finite_float, default=None,
                 help='window length; a model with a sampling rate fixes it (T / fps: one '
                 'clip as evaluated) and refuses another value (default: that, else 2)')
  p.add_argument('--stride-s', type=finite_float, default=1.0,
                 help='score a window every this often')
  p.add_argument('--threshold', type=finite_float, default=0.5,
                 help='--timeline: a violent segment is windows at or above this P(violence)')
  p.add_argument('--out-dir', default='output/timeline',
                 help='--timeline: where the PNG and JSON of each video go')
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_predict)

  p = sub.add_parser('attention', help="draw where the pushed model looks in a video's clip")
  add_model_arguments(p)
  p.add_argument('--method', default='auto', choices=['auto', 'rollout', 'gradient'],
                 help='auto: attention rollout for Model 1, gradient x input otherwise')
  p.add_argument('--out-dir', default='output/attention',
                 help='where the strip PNG and GIF of each video go')
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_attention)

  p = sub.add_parser('export', help='the pushed model as a TFLite model (float32, float16 or '
                     'int8) with its clip config, for edge devices; predict takes it')
  p.add_argument('--format', default='tflite', choices=['tflite'], help='the runtime')
  p.add_argument('--quantize', nargs='+', default=['none'], choices=['none', 'float16', 'int8'],
                 help='none (float32), float16 weights, or int8 (weights and activations, '
                 'calibrated on train clips); several: one file each')
  p.add_argument('--model-dir', default='', help='a SavedModel (default: newest pushed)')
  add_serving_arguments(p)
  p.add_argument('--clips-dir', default='data/clips',
                 help='int8: the ingested clips whose train split calibrates it')
  p.add_argument('--calibration-clips', type=positive_int, default=64,
                 help='int8: clips of the train split to calibrate on')
  p.add_argument('--int8', default='norm-float', choices=['norm-float', 'full'],
                 help='int8: norm-float keeps the normalisation layers (GroupNorm, LayerNorm) '
                 'in float, which keeps the accuracy; full quantises every op with an int8 '
                 'kernel')
  p.add_argument('--out-dir', default='', help="a folder outside the model ('': "
                 'output/tflite/<model name>/<version>)')
  add_overwrite_argument(p)
  p.set_defaults(func=_cmd_export)

  p = sub.add_parser('checkpoint', help='a Hugging Face model directory: inspect it, or export '
                     'it as a SavedModel with its own head and preprocessing')
  p.add_argument('action', choices=['inspect', 'export'], metavar='{inspect,export}',
                 help='inspect: print what the directory holds; export: write a SavedModel')
  p.add_argument('path', metavar='MODEL_DIR', help='model directory (config.json, '
                 'model.safetensors, preprocessor_config.json), local or any tf.io.gfile URI')
  p.add_argument('--output', help='export: SavedModel directory to create')
  p.add_argument('--num-frames', type=positive_int, default=0,
                 help="export: clip length T (default: the checkpoint's; image ViT: 2)")
  p.set_defaults(func=_cmd_checkpoint)
