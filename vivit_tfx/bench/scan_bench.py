"""`vivit-tfx bench scan`: hours of footage scored per hour by `scan` with 1 and 2 workers,
beside `predict --timeline` on the same videos and the decode floor.

Synthetic long videos (violent and calm 5 s segments) are written to a temporary folder; each
measure is the wall time of one command in a fresh process, start-up included, pinned to as
many cores as it has workers (each worker: one decoder thread, one TensorFlow thread):

  decode floor       the frames the timeline's windows need, decoded and converted, nothing
                     else (`timeline.stream_windows`), one process, one core
  predict --timeline the existing command, one process, one core
  scan, N workers    `vivit-tfx scan --workers N` (1: in the launching process; N > 1: the
                     DirectRunner's worker processes)

With `--repeats R` every command and its start-up run R times, in rounds (each round runs every
command once, so a slow spell of the machine touches all of them); each figure is its least
over the rounds. Then checks that the scan's window scores equal `predict --timeline`'s.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

from vivit_tfx.data import synthetic


NOISE_S = 0.5  # CPU seconds: a difference smaller than this is not reported


def _pinned(cores: int):
  """preexec_fn: the child runs on the first `cores` cores this process may use."""
  def pin():
    if hasattr(os, 'sched_setaffinity'):
      os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
  return pin


def _timed(argv: List[str], cores: int) -> Tuple[float, float]:
  """(wall s, CPU s: user + system of the process and the children it waited for) of a
  command run in a fresh process on `cores` cores; a failure raises with its stderr."""
  with tempfile.TemporaryFile() as err:
    start = time.perf_counter()
    child = subprocess.Popen(argv, preexec_fn=_pinned(cores), stdout=subprocess.DEVNULL,
                             stderr=err)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0,):
      err.seek(0)
      raise RuntimeError(f'{" ".join(argv[:5])}…: exit {child.returncode}: '
                         f'{err.read().decode(errors="replace")[-2000:]}')
  return wall, usage.ru_utime + usage.ru_stime


def decode_floor(videos: List[str], model_dir: str, stride_s: float) -> None:
  """Decodes the frames the timeline's windows need, and nothing else (the floor)."""
  from vivit_tfx.data import video_reader  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data.clip_config import clip_config_of  # pylint: disable=g-import-not-at-top
  from vivit_tfx.inference import timeline  # pylint: disable=g-import-not-at-top
  video_reader.set_decoder_threads(1)
  clip = clip_config_of(model_dir)
  window_s = timeline.window_s_for(clip, None)
  for path in videos:
    info = video_reader.probe(path)
    windows = timeline.plan_windows(info.num_frames, info.fps, window_s, stride_s,
                                    clip.num_frames, clip.sample_fps)
    for _ in timeline.stream_windows(path, windows, tuple(clip.frame_size)):
      pass


def untrained_model(name: str, carrying: str, folder: str) -> str:
  """An untrained model of preset `name` exported to `folder` (`watch_streams`), with the
  training statistics of the model `carrying` when given, so that its scan does the same
  drift work."""
  # local: TensorFlow and Keras
  from vivit_tfx.bench import watch_streams  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import drift_stats  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.network.vivit_config import preset  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.checkpoints import hub_presets  # pylint: disable=g-import-not-at-top
  watch_streams.export_untrained(preset(name), folder, hub_presets.sample_fps(name))
  if carrying:
    shutil.copyfile(os.path.join(carrying, drift_stats.REFERENCE_FILE),
                    os.path.join(folder, drift_stats.REFERENCE_FILE))
  return folder


def _ratio(a: float, b: float, form: str = '.0f') -> str:
  """a / b, or '—' where either is under NOISE_S seconds: lost in the start-up's own
  variation."""
  return '—' if min(a, b) <= NOISE_S else f'{a / b:{form}}'


def _window_scores(folder: str) -> dict:
  return {name.split('.')[0]: [w['score'] for w in json.load(open(os.path.join(folder, name)))[
      'windows']] for name in os.listdir(folder) if name.endswith('.segments.json')}


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench scan', description=__doc__)
  parser.add_argument('--model-dir', default='',
                      help='a SavedModel (default: newest under output/serving/vivit_violence)')
  parser.add_argument('--untrained', default='', metavar='PRESET',
                      help='an untrained model of this preset (speed only), carrying '
                      "--model-dir's training statistics when given (the same drift work)")
  parser.add_argument('--videos', type=int, default=3, help='synthetic videos to scan')
  parser.add_argument('--seconds', type=float, default=20.0, help='length of each video')
  parser.add_argument('--size', default='320x240', help='WxH of the videos')
  parser.add_argument('--fps', type=float, default=15.0)
  parser.add_argument('--workers', default='1,2', help='scan worker counts to measure')
  parser.add_argument('--stride-s', type=float, default=1.0)
  parser.add_argument('--repeats', type=int, default=1,
                      help='rounds of every command; each figure is its least over the rounds')
  parser.add_argument('--decode-only', nargs='+', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.decode_only:  # the floor's own process: no TensorFlow
    decode_floor(args.decode_only, args.model_dir, args.stride_s)
    return 0
  from vivit_tfx.inference import predict  # pylint: disable=g-import-not-at-top
  model_dir = args.model_dir
  if not (model_dir or args.untrained):  # an untrained model needs no pushed one
    model_dir = predict.newest_version('output/serving', 'vivit_violence')
  width, height = (int(x) for x in args.size.split('x'))
  segments = max(1, int(round(args.seconds / 5)))
  cli = [sys.executable, '-m', 'vivit_tfx.cli']
  with tempfile.TemporaryDirectory() as tmp:
    if args.untrained:
      model_dir = untrained_model(args.untrained, args.model_dir, os.path.join(tmp, 'model'))
    videos = []
    for i in range(args.videos):
      videos.append(os.path.join(tmp, 'footage', f'camera{i}.mp4'))
      os.makedirs(os.path.dirname(videos[-1]), exist_ok=True)
      synthetic.long_video(videos[-1], [(i + k) % 2 for k in range(segments)], segment_s=5.0,
                           fps=args.fps, size=(width, height), seed=i)
    # Start-up: the same command on one 1 s video.
    blip = os.path.join(tmp, 'blip', 'blip.mp4')
    os.makedirs(os.path.dirname(blip))
    synthetic.long_video(blip, [0], segment_s=1.0, fps=args.fps, size=(width, height))
    footage_s = args.videos * segments * 5.0
    common = ['--model-dir', model_dir, '--stride-s', str(args.stride_s)]

    def commands(inputs: List[str], folder: str, tag: str):
      yield 'decode floor', 1, [sys.executable, '-m', 'vivit_tfx.bench.scan_bench',
                                '--decode-only', *inputs, *common]
      yield 'predict --timeline', 1, cli + ['predict', '--timeline', *inputs, '--out-dir',
                                            os.path.join(tmp, f'timeline{tag}'), *common]
      for n in (int(x) for x in args.workers.split(',')):
        yield f'scan, {n} worker(s)', n, cli + [
            'scan', folder, '--out', os.path.join(tmp, f'scan-{n}{tag}'), '--workers', str(n),
            '--threads-per-worker', '1', *common]

    runs = {}  # (name, cores) → [((wall, CPU), (start-up wall, start-up CPU))], one per round
    for r in range(max(1, args.repeats)):  # own output folders: a scan skips what it scored
      for (name, n, argv), (_, _, start) in zip(
          commands(videos, os.path.dirname(videos[0]), f'-{r}'),
          commands([blip], os.path.dirname(blip), f'-blip-{r}')):
        runs.setdefault((name, n), []).append((_timed(argv, n), _timed(start, n)))
    least = lambda pairs: tuple(min(p[i] for p in pairs) for i in range(2))
    rows = [(name, n, least([m for m, _ in measured]), least([s for _, s in measured]))
            for (name, n), measured in runs.items()]
    expected = _window_scores(os.path.join(tmp, 'timeline-0'))
    outs = [os.path.join(tmp, f'scan-{n}-0', 'videos') for n in
            (int(x) for x in args.workers.split(','))]
    gaps = [abs(a - b) for out in outs for stem, scores in _window_scores(out).items()
            for a, b in zip(scores, expected[stem])]
    same = all(len(_window_scores(o)[s]) == len(expected[s]) for o in outs for s in expected)
  floor_cpu = rows[0][2][1] - rows[0][3][1]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  shown = (f'untrained {args.untrained} (the training statistics of {args.model_dir or "none"})'
           if args.untrained else model_dir)
  print(f'bench scan: {args.videos} synthetic videos of {segments * 5:g} s, {width}x{height} at '
        f'{args.fps:g} fps ({footage_s / 3600:.4f} h), stride {args.stride_s:g} s, model '
        f'{shown}; {cores} core(s) available. Each command in a fresh process pinned to '
        '"cores"; start-up: the same command on one 1 s video; CPU: user + system seconds of the '
        f'command and its worker processes; each figure the least of {max(1, args.repeats)} '
        'round(s)')
  print('| command | cores | wall s | CPU s | start-up wall s | start-up CPU s | footage h / '
        'wall h | footage h / wall h, start-up off | footage h / CPU h, start-up off | CPU, '
        'start-up off, / decode floor\'s |')
  print('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for name, n, (wall, cpu), (start_wall, start_cpu) in rows:
    print(f'| {name} | {n} | {wall:.1f} | {cpu:.1f} | {start_wall:.1f} | {start_cpu:.1f} | '
          f'{footage_s / wall:.1f} | {_ratio(footage_s, wall - start_wall)} | '
          f'{_ratio(footage_s, cpu - start_cpu)} | '
          f'{_ratio(cpu - start_cpu, floor_cpu, ".2f")} |')
  scans = {n: (wall, wall - start_wall) for name, n, (wall, _), (start_wall, _) in rows
           if name.startswith('scan')}
  for n in sorted(scans)[1:]:
    one, many = scans[min(scans)], scans[n]
    print(f'scan, {n} workers against {min(scans)}: {one[0] / many[0]:.2f}x faster in wall time, '
          f'{_ratio(one[1], many[1], ".2f")}x start-up off (the rate on a long archive)')
  print(f'scan window scores vs predict --timeline: '
        f'{"same windows" if same else "DIFFERENT windows"}, max |difference| '
        f'{max(gaps, default=0):.1e}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
