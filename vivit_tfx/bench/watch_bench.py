"""`vivit-tfx bench watch`: can `watch` keep up with a camera?

Plays a synthetic 720p video (violent and calm segments) as a loopback HTTP MJPEG stream in real
time, runs `watch` on it with the pushed model, and prints stream seconds processed per wall
second (video seconds read per second of wall time; 1.0 = real time), windows dropped and capture → score latency p50/p95. `--cores N` pins
the process to N CPU cores first.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
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
  args = parser.parse_args(argv)
  if args.cores and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
  model_dir = args.model_dir or predict.newest_version('output/serving', 'vivit_violence')
  width, height = (int(x) for x in args.size.split('x'))
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
