"""`vivit-tfx bench watch`: can `watch` keep up with a camera?

Plays a synthetic 720p video (violent and calm segments) as a loopback HTTP MJPEG stream in real
time, runs `watch` on it with the pushed model, and prints stream seconds processed per wall
second (video seconds read per second of wall time; 1.0 = real time), windows dropped and capture → score latency p50/p95. `--cores N` pins
the process to N CPU cores first. `--streams 1,2,4,…`: many 720p H.264 cameras in one process
instead (`watch_streams`).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from typing import List, Optional

# video_reader first: it quiets FFmpeg before OpenCV (mjpeg_stream's) loads.
from vivit_tfx.data import synthetic, video_reader  # pylint: disable=unused-import
from vivit_tfx.bench.mjpeg_stream import MjpegStream  # pylint: disable=g-bad-import-order
from vivit_tfx.inference import predict, watch


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench watch', description=__doc__)
  parser.add_argument('--model-dir', default='',
                      help='a SavedModel (default: newest under output/serving/vivit_violence)')
  parser.add_argument('--size', default='1280x720', help='WxH of the stream')
  parser.add_argument('--fps', type=float, default=30.0)
  parser.add_argument('--segments', default='0101', help='labels of 5 s segments')
  parser.add_argument('--cores', type=int, default=2, help='pin to this many cores (0: all)')
  parser.add_argument('--streams', default='', help='comma-separated camera counts (e.g. '
                      '1,2,4,8,16,24): H.264 files at their frame rate, all in one process')
  parser.add_argument('--seconds', type=float, default=20.0, help='--streams: length of the '
                      'stream video it writes (a --video that exists plays as it is)')
  parser.add_argument('--video', default='', help='--streams: the stream video; generated '
                      'there if missing (default: a temporary one)')
  parser.add_argument('--untrained', default='', metavar='PRESET', help='--streams: an '
                      'untrained model of this preset (speed only) instead of --model-dir')
  parser.add_argument('--stride-s', type=float, default=1.0, help='--streams: watch --stride-s')
  args = parser.parse_args(argv)
  if args.cores and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
  width, height = (int(x) for x in args.size.split('x'))
  if args.streams:
    return _streams(args, (width, height))
  model_dir = args.model_dir or predict.newest_version('output/serving', 'vivit_violence')
  with tempfile.TemporaryDirectory() as tmp:
    video = os.path.join(tmp, 'camera.mp4')
    synthetic.long_video(video, [int(c) for c in args.segments], segment_s=5.0, fps=args.fps,
                         size=(width, height))
    events = io.StringIO()
    with MjpegStream(video) as url:
      summary = watch.watch(watch.WatchConfig(source=url, model_dir=model_dir,
                                              out_dir=os.path.join(tmp, 'watch'),
                                              reconnect_s=2.0), stdout=events, log=lambda m: None)
  found = [json.loads(l) for l in events.getvalue().splitlines()]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  print(f'watch: {width}x{height} MJPEG at {args.fps:g} fps, {len(args.segments) * 5} s, '
        f'model {model_dir}, {cores} core(s)')
  print('| stream s / wall s | frames read | fps | windows scored | windows dropped | '
        'frames dropped | latency p50 (ms) | latency p95 (ms) | events |')
  print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  # Live stream time is wall time from the first frame to the last one read; a reader that
  # falls behind slows the sender (TCP), so video seconds read per stream second drop below 1.
  print(f'| {summary["frames_read"] / args.fps / max(1e-9, summary["stream_s"]):.2f} | '
        f'{summary["frames_read"]} | {summary["fps"]:.1f} | {summary["windows_scored"]} | '
        f'{summary["windows_dropped"]} | {summary["frames_dropped"]} | '
        f'{1000 * summary["latency_p50_s"]:.0f} | {1000 * summary["latency_p95_s"]:.0f} | '
        f'{sum(e["event"] == "end" for e in found)} |')
  return 0


def _streams(args, size) -> int:
  """`--streams`: the table of `watch_streams.run`, with what was measured on what."""
  # local: loads the models (TensorFlow, Keras) only for this mode.
  from vivit_tfx.bench import watch_streams  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data.clip_config import DEFAULT_SAMPLE_FPS  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.network.vivit_config import preset  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory() as tmp:
    video = args.video or os.path.join(tmp, 'camera.mp4')
    if not os.path.exists(video):
      started = time.monotonic()
      watch_streams.camera_video(video, args.seconds, args.fps, size)
      print(f'{video}: {args.seconds:g} s of {size[0]}x{size[1]} H.264 at {args.fps:g} fps '
            f'written in {time.monotonic() - started:.0f} s')
    if args.untrained:
      config = preset(args.untrained)
      model_dir = watch_streams.export_untrained(config, os.path.join(tmp, 'model'),
                                                 DEFAULT_SAMPLE_FPS)
      model = f'untrained {args.untrained} ({config.num_frames} frames of {config.image_size})'
    else:
      model_dir = args.model_dir or predict.newest_version('output/serving', 'vivit_violence')
      model = model_dir
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    print(f'watch --streams: {video} ({size[0]}x{size[1]} H.264, {args.fps:g} fps) per camera, '
          f'at its frame rate; model {model}; {cores} core(s)')
    streams = [int(n) for n in args.streams.split(',')]
    rows, floors = watch_streams.run(streams, model_dir, video, args.stride_s,
                                     say=lambda line: print(line, file=sys.stderr))
    print(watch_streams.table(rows, floors))
    ceiling = watch_streams.decode_floor(video, 1, realtime=False)
    print(f'decode floor, one stream as fast as it goes: {ceiling.frames_per_s:.0f} frames/s '
          f'({ceiling.frames_per_s / args.fps:.1f}x real time) at '
          f'{ceiling.cpu_per_camera:.0f} % of a core')
    both = watch_streams.decode_floor(video, 2, realtime=False)
    print(f'two decoder threads as fast as they go: {both.frames_per_s:.0f} frames/s in all '
          f'({both.frames_per_s / max(1e-9, ceiling.frames_per_s):.2f}x one thread; '
          f'{2 * both.cpu_per_camera:.0f} % of a core)')
  return 0
