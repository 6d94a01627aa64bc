"""Pipeline benchmark: ingestion against the seed's loader, JPEG decode ceiling, input pipeline
against the train step, peak memory at N and 10·N clips, VideoExampleGen on Beam with 1 and 2
worker processes, serving throughput.

Every figure is printed with its baseline and the ratio (absolute times vary by machine).
Run: `vivit-tfx bench pipeline [--clips 40] [--model-dir DIR]`.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional

import numpy as np
import tensorflow as tf

from vivit_tfx.data import features, ingest, synthetic, video_reader
from vivit_tfx.inference import predict
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit_config import preset
from vivit_tfx.models.trainer import augment, preprocessing, training
from vivit_tfx.pipeline import beam_options

import cv2  # pylint: disable=g-bad-import-order  # after video_reader sets OpenCV's log level

FRAMES, SIZE = 8, (64, 64)


def _videos(root: str, n: int, seed: int = 5, long: bool = False) -> List[str]:
  """Synthetic videos; `long`: 8-12 s at 25 fps, 320x240 and 480x360 (closer to RLVS)."""
  config = synthetic.SyntheticConfig(num_clips=n, seed=seed)
  if long:
    config = synthetic.SyntheticConfig(num_clips=n, seed=seed, sizes=((320, 240), (480, 360)),
                                       fps_choices=(25.0,), duration_s=(8.0, 12.0))
  return synthetic.generate(root, config, progress=False)


def seed_style_clip(path: str) -> np.ndarray:
  """The seed's loader: decode *every* frame, keep every k-th, squash-resize, float32 [0, 1]."""
  frames = video_reader.read_all_frames(path)
  step = max(len(frames) // FRAMES, 1)
  kept = [cv2.resize(f, SIZE[::-1]).astype(np.float32) / 255.0 for f in frames[::step][:FRAMES]]
  while len(kept) < FRAMES:  # the seed pads with -2.0 frames; same bytes either way
    kept.append(np.full_like(kept[0], -2.0))
  return np.stack(kept)


def _one_clip_config():
  """T frames over the whole video, one clip per record (`--sample-fps 0`): the rule of the
  seed's loader these rows compare with."""
  return ingest.ClipConfig(FRAMES, SIZE, sample_fps=0.0)


def bench_ingest(videos_root: str, paths: List[str], work: str) -> Dict[str, float]:
  """Per-clip work in one process (ours: sample + resize + JPEG; seed: decode all, float32),
  then the whole `ingest` command on every core (process start-up and writing included)."""
  clip = _one_clip_config()
  ingest.read_example(paths[0], 'warm-up', 0, clip)  # imports TF outside the timing
  seed_style_clip(paths[0])
  start = time.perf_counter()
  baseline_bytes = sum(seed_style_clip(p).nbytes for p in paths)
  baseline_s = time.perf_counter() - start
  start = time.perf_counter()
  for p in paths:
    example, reason = ingest.read_example(p, os.path.relpath(p, videos_root), 0, clip)
    assert example is not None, reason
  ours_s = time.perf_counter() - start
  out = os.path.join(work, 'clips')
  start = time.perf_counter()
  summary = ingest.ingest(videos_root, out, clip, workers=0, progress=False)
  command_s = time.perf_counter() - start
  records = glob.glob(os.path.join(out, '*', '*.tfrecord'))
  return {'clips': len(paths), 'baseline_clips_per_s': len(paths) / baseline_s,
          'baseline_bytes_per_clip': baseline_bytes / len(paths),
          'ours_1proc_clips_per_s': len(paths) / ours_s,
          'ours_command_clips_per_s': summary.num_written / command_s,
          'ours_bytes_per_clip': sum(os.path.getsize(f) for f in records) / len(paths)}


# The decode-bound rows: 720p H.264 (written with PyAV's libx264) read at these clips, passed
# explicitly so that a change of ClipConfig's defaults does not move the measurement.
HD_CODEC, HD_SECONDS = 'H.264', 8.0
HD_CLIPS = {  # row key suffix → (label, ClipConfig fields)
    '': ('8 × 64×64 at 8 fps, ≤ 10 s: default clip',
         dict(num_frames=8, frame_size=(64, 64), sample_fps=8.0, max_duration_s=10.0)),
    '_224': ('32 × 224×224 at 8 fps, ≤ 10 s',
             dict(num_frames=32, frame_size=(224, 224), sample_fps=8.0, max_duration_s=10.0)),
}


def _hd_frames(index: int, seconds: float) -> Iterator[np.ndarray]:
  """1280×720 RGB frames [720, 1280, 3], 25 fps: a synthetic scene rendered at 320×180 and
  upscaled, over fine detail that pans 2 px per frame (camera motion, a realistic bitrate)."""
  spec = synthetic.ClipSpec(index=index, label=index % 2, width=320, height=180, fps=25.0,
                            num_frames=int(seconds * 25), container='mp4', seed=100 + index)
  detail = np.random.default_rng(index).integers(0, 64, (180, 320, 3), np.uint8)
  detail = detail.repeat(4, 0).repeat(4, 1)  # [720, 1280, 3] in [0, 64)
  for i, frame in enumerate(synthetic.render(spec)):
    yield cv2.resize(frame, (1280, 720)) // 4 * 3 + np.roll(detail, 2 * i, axis=1)


def _hd_videos(root: str, n: int, seconds: float = HD_SECONDS) -> List[str]:
  """n 720p 25 fps H.264 videos of `seconds` (libx264's default preset and GOP)."""
  os.makedirs(root, exist_ok=True)
  paths = [os.path.join(root, f'hd_{i}.mp4') for i in range(n)]
  for i, path in enumerate(paths):
    synthetic.write_h264(path, _hd_frames(i, seconds), 25.0)
  return paths


def _grab_all_s(path: str) -> float:
  """Seconds to grab() (decode, no conversion) every frame with OpenCV: the baseline."""
  start = time.perf_counter()
  capture = video_reader.open_video(path)
  while capture.grab():
    pass
  capture.release()
  return time.perf_counter() - start


def _ingest_read_s(path: str, clip) -> float:
  """Seconds of ingest's read of one video (sample, scale + convert, JPEG-encode)."""
  start = time.perf_counter()
  result, reason = ingest.read_jpegs(path, clip)
  assert result is not None, reason
  return time.perf_counter() - start


def bench_decode_bound(paths: List[str], repeats: int = 3) -> Dict[str, float]:
  """Ingest's per-video read at each of HD_CLIPS against grab()bing every frame of it; each
  total is the fastest of `repeats` interleaved passes (other load on the machine only adds)."""
  clips = {key: ingest.ClipConfig(**fields) for key, (_, fields) in HD_CLIPS.items()}
  _ingest_read_s(paths[0], clips[''])  # warm-up: imports, codec and scaler set-up
  totals = {'grab': [], **{key: [] for key in clips}}  # measure → seconds of each pass
  for _ in range(repeats):
    totals['grab'].append(sum(_grab_all_s(p) for p in paths))
    for key, clip in clips.items():
      totals[key].append(sum(_ingest_read_s(p, clip) for p in paths))
  grab_s = min(totals['grab'])
  row = {'hd_videos': len(paths), 'grab_all_s_per_video': grab_s / len(paths),
         'hd_mbit_per_s': np.mean([os.path.getsize(p) * 8e-6 / HD_SECONDS for p in paths])}
  for key in clips:
    row[f'ingest_s_per_video{key}'] = min(totals[key]) / len(paths)
    row[f'ingest_vs_grab{key}'] = min(totals[key]) / grab_s
  return row


def _clip_dataset(clips_dir: str, training: bool):
  """The Trainer's input pipeline without TFX: parse → decode → normalise → augment → batch."""
  files = glob.glob(os.path.join(clips_dir, 'train', '*.tfrecord'))
  spec = {features.FRAMES: tf.io.FixedLenFeature([FRAMES], tf.string),
          features.LABEL: tf.io.FixedLenFeature([1], tf.int64)}

  def _map(records):
    parsed = tf.io.parse_example(records, spec)
    clips = (preprocessing.decode_clips(parsed[features.FRAMES], SIZE) - 0.45) / 0.25
    return (augment.augment(clips) if training else clips), parsed[features.LABEL]

  return (tf.data.TFRecordDataset(files).cache().repeat().batch(16)
          .map(_map, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))


def _rate(iterator, batches: int, per_batch: int) -> float:
  next(iterator)  # warm-up
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * per_batch / (time.perf_counter() - start)


def bench_decode_and_input(clips_dir: str) -> Dict[str, float]:
  files = glob.glob(os.path.join(clips_dir, 'train', '*.tfrecord'))
  spec = {features.FRAMES: tf.io.FixedLenFeature([FRAMES], tf.string)}
  frames = (tf.data.TFRecordDataset(files).cache().repeat()
            .map(lambda r: tf.io.parse_single_example(r, spec)[features.FRAMES])
            .unbatch().map(lambda b: tf.io.decode_jpeg(b, channels=3),
                           num_parallel_calls=tf.data.AUTOTUNE).batch(128)
            .prefetch(tf.data.AUTOTUNE))
  ceiling = _rate(iter(frames), 60, 128)  # frames/s
  input_rate = _rate(iter(_clip_dataset(clips_dir, training=True)), 40, 16)  # clips/s
  return {'decode_ceiling_frames_per_s': ceiling, 'input_clips_per_s': input_rate,
          'input_fraction_of_ceiling': input_rate * FRAMES / ceiling}


def bench_train_step() -> Dict[str, float]:
  config = preset('vivit-tiny')
  model = initialised_vivit(config)
  training.compile_model(model, config, total_steps=1000)
  x = np.random.default_rng(0).normal(size=(16, FRAMES, *SIZE, 3)).astype(np.float32)
  y = np.random.default_rng(0).integers(0, 2, (16, 1)).astype(np.float32)
  data = tf.data.Dataset.from_tensors((x, y)).repeat()
  model.fit(data, steps_per_epoch=5, epochs=1, verbose=0)  # trace + warm-up
  steps = 40
  start = time.perf_counter()
  model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
  return {'train_step_clips_per_s': steps * 16 / (time.perf_counter() - start)}


_MEMORY_SCRIPT = '''
import json, sys
from vivit_tfx.data import ingest
root, out, mode = sys.argv[1:4]
if mode == 'ingest':
    ingest.ingest(root, out, ingest.ClipConfig(8, (64, 64), sample_fps=0.0), workers=1,
                  progress=False)
else:
    import glob, tempfile
    import tensorflow as tf, tensorflow_transform.beam as tft_beam
    from tfx_bsl.public import tfxio
    from vivit_tfx import schemas
    from vivit_tfx.components.clip_transform import CLIPS_PER_BATCH
    from vivit_tfx.models import preprocessing
    source = tfxio.TFExampleRecord(file_pattern=glob.glob(out + '/train/*.tfrecord'),
                                   schema=schemas.load(schemas.for_frame_slots(
                                       8, tempfile.mkdtemp())))
    import apache_beam as beam
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        raw = p | source.BeamSource(CLIPS_PER_BATCH)  # as the pipeline's ClipTransform
        _ = ((raw, source.TensorAdapterConfig())
             | tft_beam.AnalyzeDataset(lambda x: preprocessing.preprocessing_fn(
                 x, {'image_size': [64, 64], 'num_frames': 8})))
# VmHWM is this process's own peak RSS (ru_maxrss would include the forking parent's).
hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({'peak_rss_mib': int(hwm.split()[1]) / 1024}))
'''


def _peak_rss(root: str, out: str, mode: str) -> float:
  result = subprocess.run([sys.executable, '-c', _MEMORY_SCRIPT, root, out, mode],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  return json.loads(result.stdout.strip().splitlines()[-1])['peak_rss_mib']


def bench_memory(work: str, n: int) -> Dict[str, float]:
  row = {}
  for scale in (1, 10):
    root = os.path.join(work, f'mem_videos_{scale}')
    _videos(root, n * scale, seed=11)
    out = os.path.join(work, f'mem_clips_{scale}')
    row[f'ingest_rss_mib_{scale}n'] = _peak_rss(root, out, 'ingest')
    row[f'transform_rss_mib_{scale}n'] = _peak_rss(root, out, 'transform')
  row['ingest_growth'] = row['ingest_rss_mib_10n'] / row['ingest_rss_mib_1n']
  row['transform_growth'] = row['transform_rss_mib_10n'] / row['transform_rss_mib_1n']
  return row


def bench_serving(model_dir: str, clips_dir: str) -> Dict[str, float]:
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  files = glob.glob(os.path.join(clips_dir, 'train', '*.tfrecord'))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files).take(16)]
  row = {}
  for batch in (1, 16):
    examples = tf.constant((records * 16)[:batch])
    serve(examples=examples)
    reps = max(3, 48 // batch)
    start = time.perf_counter()
    for _ in range(reps):
      serve(examples=examples)
    row[f'serving_clips_per_s_batch{batch}'] = reps * batch / (time.perf_counter() - start)
  return row


def bench_video_example_gen(videos_root: str, work: str, workers=(1, 2)) -> Dict[str, float]:
  """VideoExampleGen's executor on Beam's DirectRunner in multi-process mode with 1 and 2
  worker processes: clips/s over all the videos (start-up included), and the marginal rate
  once the fixed cost (worker start-up, pipeline set-up, writing) of a 2-video run is taken
  off: (N - 2) / (t(N) - t(2))."""
  # local: TFX and Beam (~5 s more) load only for this measurement.
  from tfx.dsl.components.base import base_beam_executor  # pylint: disable=g-import-not-at-top
  from tfx.types import standard_artifacts  # pylint: disable=g-import-not-at-top
  from vivit_tfx.components.video_example_gen import executor  # pylint: disable=g-import-not-at-top
  small_root = os.path.join(work, 'videos_2')
  for path in sorted(glob.glob(os.path.join(videos_root, '*', '*')))[:1] + sorted(
      glob.glob(os.path.join(videos_root, '*', '*')))[-1:]:
    target = os.path.join(small_root, os.path.relpath(path, videos_root))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy(path, target)

  def run(root: str, n: int, name: str):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(work, name)
    exec_properties = executor.standalone_exec_properties(
        root, _one_clip_config(), split_names=('train', 'eval'))
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_options.for_tfx(
        ['--direct_running_mode=multi_processing', f'--direct_num_workers={n}']))
    start = time.perf_counter()
    executor.Executor(context).Do({}, {'examples': [examples]}, exec_properties)
    seconds = time.perf_counter() - start
    files = glob.glob(os.path.join(examples.uri, 'Split-*', '*'))
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type='GZIP')), seconds

  row = {}
  for n in workers:
    small_clips, small_s = run(small_root, n, f'video_example_gen_2clips_{n}w')
    clips, seconds = run(videos_root, n, f'video_example_gen_{n}w')
    row[f'video_example_gen_clips_per_s_{n}w'] = clips / seconds
    row[f'video_example_gen_marginal_clips_per_s_{n}w'] = (clips - small_clips) / max(
        seconds - small_s, 1e-9)
  return row


def format_table(r: Dict[str, float]) -> str:
  rows = []
  for key, (label, _) in HD_CLIPS.items():
    if f'ingest_vs_grab{key}' in r:
      rows.append((f'ingest read per 720p {HD_CODEC} video ({label}) vs grab() of every frame',
                   f"{r[f'ingest_s_per_video{key}']:.3f} s",
                   f"{r['grab_all_s_per_video']:.3f} s (grab all)", r[f'ingest_vs_grab{key}'],
                   '≤ 1.3×' if key == '' else ''))
  if 'ours_1proc_clips_per_s' in r:
    rows += [
        ('clips/s per clip of work, 1 process', f"{r['ours_1proc_clips_per_s']:.1f}",
         f"{r['baseline_clips_per_s']:.1f} (seed loader)",
         r['ours_1proc_clips_per_s'] / r['baseline_clips_per_s'], '≥ 3×'),
        ('`ingest` command clips/s, all cores, start-up incl.',
         f"{r['ours_command_clips_per_s']:.1f}", f"{r['baseline_clips_per_s']:.1f} (seed loader)",
         r['ours_command_clips_per_s'] / r['baseline_clips_per_s'], ''),
        ('bytes per stored clip', f"{r['ours_bytes_per_clip']:.0f}",
         f"{r['baseline_bytes_per_clip']:.0f} (float32)",
         r['ours_bytes_per_clip'] / r['baseline_bytes_per_clip'], '≤ 1/20 (0.05)'),
        ('training input clips/s (decode+normalise+augment)', f"{r['input_clips_per_s']:.1f}",
         f"{r['decode_ceiling_frames_per_s'] / FRAMES:.1f} (tf.io.decode_jpeg ceiling)",
         r['input_fraction_of_ceiling'], ''),
        ('input pipeline vs train step (vivit-tiny, batch 16)', f"{r['input_clips_per_s']:.1f}",
         f"{r['train_step_clips_per_s']:.1f} (train step)",
         r['input_clips_per_s'] / r['train_step_clips_per_s'], '≥ 2×'),
    ]
  if 'ingest_growth' in r:
    rows += [
        ('ingest peak RSS MiB, N → 10·N clips', f"{r['ingest_rss_mib_10n']:.0f}",
         f"{r['ingest_rss_mib_1n']:.0f} (N clips)", r['ingest_growth'], '≤ 1.2×'),
        ('Transform analyze peak RSS MiB, N → 10·N', f"{r['transform_rss_mib_10n']:.0f}",
         f"{r['transform_rss_mib_1n']:.0f} (N clips)", r['transform_growth'], '≤ 1.2×')]
  if 'video_example_gen_clips_per_s_2w' in r:
    rows += [
        ('VideoExampleGen clips/s, Beam 2 workers vs 1, start-up incl.',
         f"{r['video_example_gen_clips_per_s_2w']:.1f}",
         f"{r['video_example_gen_clips_per_s_1w']:.1f} (1 worker)",
         r['video_example_gen_clips_per_s_2w'] / r['video_example_gen_clips_per_s_1w'], ''),
        ('VideoExampleGen marginal clips/s (fixed cost off), 2 workers vs 1',
         f"{r['video_example_gen_marginal_clips_per_s_2w']:.1f}",
         f"{r['video_example_gen_marginal_clips_per_s_1w']:.1f} (1 worker)",
         r['video_example_gen_marginal_clips_per_s_2w'] /
         r['video_example_gen_marginal_clips_per_s_1w'], '≥ 1.7× on 2 cores')]
  if 'serving_clips_per_s_batch1' in r:
    rows.append(('serving_default clips/s, batch 16 vs batch 1',
                 f"{r['serving_clips_per_s_batch16']:.1f}",
                 f"{r['serving_clips_per_s_batch1']:.1f} (batch 1)",
                 r['serving_clips_per_s_batch16'] / r['serving_clips_per_s_batch1'], ''))
  lines = ['| measure | ours | baseline | ratio | goal |', '|---|---|---|---|---|']
  lines += [f'| {a} | {b} | {c} | {d:.3g} | {e} |' for a, b, c, d, e in rows]
  return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='vivit-tfx bench pipeline', description=__doc__)
  parser.add_argument('--clips', type=int, default=60,
                      help='N long videos for ingest; memory runs N and 10·N short ones')
  parser.add_argument('--model-dir', default='',
                      help='SavedModel for the serving figures (default: newest pushed)')
  parser.add_argument('--skip-memory', action='store_true')
  parser.add_argument('--skip-beam', action='store_true',
                      help='skip VideoExampleGen on Beam with 1 and 2 worker processes')
  parser.add_argument('--hd-videos', type=int, default=4,
                      help='720p videos for the decode-bound ratio (0: skip)')
  parser.add_argument('--decode-bound-only', action='store_true',
                      help='print only the decode-bound rows (720p ingest read vs grab all)')
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix='vivit-bench-')
  row = {}
  if args.hd_videos:
    row.update(bench_decode_bound(_hd_videos(os.path.join(work, 'hd'), args.hd_videos)))
  if args.decode_bound_only:
    print(format_table(row))
    print(json.dumps({k: round(v, 4) for k, v in row.items()}))
    return 0
  root = os.path.join(work, 'videos')
  paths = _videos(root, args.clips, long=True)
  row.update(bench_ingest(root, paths, work))
  clips_dir = os.path.join(work, 'clips')
  row.update(bench_decode_and_input(clips_dir))
  row.update(bench_train_step())
  if not args.skip_memory:
    row.update(bench_memory(work, args.clips))
  if not args.skip_beam:
    row.update(bench_video_example_gen(root, work))
  model_dir = args.model_dir
  if not model_dir:
    try:
      model_dir = predict.newest_version('output/serving', 'vivit_violence')
    except ValueError:
      print('(no pushed model under output/serving: serving figures skipped)')
  if model_dir:
    row.update(bench_serving(model_dir, clips_dir))
  print(format_table(row))
  print(json.dumps({k: round(v, 4) for k, v in row.items()}))
  return 0
