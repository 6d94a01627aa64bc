"""From alerts to a better model, end to end (issue 32): train → review on the served page →
`reviews export` → retrain with the verdicts and `--reviewed-clips` → the new model is blessed
over the old one and scores the reviewed false alarms lower.

A designed tiny dataset makes it deterministic: the original data tells violence from calm by
brightness alone (bright grey against dark grey), so the first model flags the new camera's
footage, bright but yellow (no blue), as violent; its reviewers mark those alarms
`not violent`, and the retrained model, which has seen them as hard negatives, learns the blue
channel. 32-pixel clips, a two-layer ViViT, a few dozen steps.
"""
import contextlib
import csv
import http.client
import io
import json
import os

import numpy as np
import pytest

from tests.conftest import TINY_CLIP, tiny_config
from tests.test_serve import free_port
from vivit_tfx import cli
from vivit_tfx.audit import metadata
from vivit_tfx.data import ingest, layouts, synthetic
from vivit_tfx.inference import predict, review, reviews_export, server
from vivit_tfx.pipeline import local_runner

CALM, VIOLENT, FALSE_ALARM = (40, 40, 40), (210, 210, 210), (210, 210, 40)  # RGB
FPS, SECONDS = 8.0, 2.0


def solid_video(path: str, rgb, seed: int) -> None:
  """A 2 s, 32×32 video of one colour with pixel noise."""
  rng = np.random.default_rng(seed)
  frames = np.clip(np.array(rgb, np.float32) + rng.normal(0, 12, (int(FPS * SECONDS), 32, 32, 3)),
                   0, 255).astype(np.uint8)
  synthetic.write_video(path, frames, FPS)


def post(port: int, path: str, body: dict) -> dict:
  """The JSON reply of a POST to the local server (asserting 200)."""
  connection = http.client.HTTPConnection('127.0.0.1', port, timeout=120)
  try:
    connection.request('POST', path, body=json.dumps(body).encode())
    reply = connection.getresponse()
    data = reply.read()
    assert reply.status == 200, (path, reply.status, data)
    return json.loads(data)
  finally:
    connection.close()


@pytest.fixture(scope='module')
def loop_data(tmp_path_factory):
  """(original videos in the RLVS layout: 8 calm, 8 violent; the new camera's footage: 4 false
  alarms)."""
  root = tmp_path_factory.mktemp('loop')
  original, footage = root / 'original', root / 'footage' / 'cam2'
  for label, (cls, rgb) in enumerate((('NonViolence', CALM), ('Violence', VIOLENT))):
    (original / cls).mkdir(parents=True)
    for i in range(8):
      solid_video(str(original / cls / f'{cls[0]}{i}.mp4'), rgb, seed=10 * label + i)
  footage.mkdir(parents=True)
  for i in range(4):
    solid_video(str(footage / f'dance{i}.mp4'), FALSE_ALARM, seed=100 + i)
  return root, str(original), str(root / 'footage')


def test_reviewed_false_alarms_retrain_a_model_blessed_over_the_old_one(loop_data):
  root, original, footage = loop_data
  steps = dict(train_steps=30, steps_per_epoch=15, learning_rate=3e-3, vivit_overrides=json.dumps(
      {'tubelet_size': [2, 8, 8], 'hidden_size': 32, 'num_layers': 2, 'mlp_dim': 64,
       'warmup_steps': 5}))
  # 1. Train the first model on the original data (`run`: ingest, then the pipeline).
  first = tiny_config(str(root / 'clips'), root / 'output', videos_dir=original, **steps)
  before = local_runner.run(first, progress=False)
  assert before.blessed and before.pushed_model, before

  # 2. Score and 3. review on the served review page: every flagged segment of the new
  # camera's footage is a false alarm, and its reviewer says so through the verdict API.
  work = str(root / 'serve')
  config = server.ServerConfig(model_dir=before.pushed_model, port=free_port(), work_dir=work,
                               videos_dir=footage, poll_s=0)
  reviewer = review.Reviewer(before.pushed_model, work, footage)
  flagged = 0
  with server.BackgroundServer(config, reviewer=reviewer):
    for name in reviewer.library():
      job = post(config.port, '/review/library', {'name': name})['job']
      segments = reviewer.result(job)['segments']
      assert segments, f'the first model flags nothing in {name}: no false alarm to review'
      for n in range(1, len(segments) + 1):
        kept = post(config.port, f'/review/{job}/verdicts', {'segment': n,
                                                              'verdict': 'not violent'})
        assert kept['verdict'] == 'not violent'
        flagged += 1

  # 4. Export the verdicts beside the original data; the held-out part → `--reviewed-clips`.
  out = root / 'reviewed'
  # (Not pytest's capsys: uvicorn's logging setup closes absl's handler, whose stream would then
  # be pytest's own capture file.)
  with contextlib.redirect_stdout(io.StringIO()) as printed:
    assert cli.main(['reviews', 'export', '--work-dir', work, '--out-dir', str(out),
                     '--original', original]) == 0
  text = printed.getvalue()
  assert (f'{flagged} false alarm(s) as hard negatives, 0 missed stretch(es), 16 original '
          'video(s)') in text, text
  with open(out / reviews_export.CSV_NAME, newline='') as f:
    listed = list(csv.DictReader(f))
  rows = [r for r in listed if r['verdict']]
  # The original videos keep the first run's splits: the second run tests on the same ones.
  first_splits = {m['path']: m['split'] for m in ingest.read_manifest(first.clips_dir)}
  assert {os.path.relpath(r['path'], os.path.realpath(original)): r['split'] for r in listed
          if not r['verdict']} == first_splits
  with open(out / reviews_export.HELD_OUT_NAME, newline='') as f:
    held_out = list(csv.DictReader(f))
  # The held-out stretches are only in held-out.csv: the second run's test split is the first's.
  assert {r['split'] for r in rows} == {'train'} and held_out, rows
  assert {r['split'] for r in held_out} == {'test'}
  assert not {r['path'] for r in held_out} & {r['path'] for r in rows}
  rows += held_out
  reviewed_clips = str(root / 'reviewed-clips')
  ingest.ingest(str(out / reviews_export.HELD_OUT_NAME), reviewed_clips, clip=TINY_CLIP,
                dataset=layouts.DatasetConfig(layout='csv', classes=('NonViolence', 'Violence')),
                progress=False)

  # 5. Retrain on both, with the blessing comparing on the held-out reviewed clips.
  second = tiny_config(str(root / 'clips-reviewed'), root / 'output',
                       videos_dir=str(out / reviews_export.CSV_NAME), layout='csv',
                       reviewed_clips=reviewed_clips, **steps)
  after = local_runner.run(second, progress=False)
  assert after.blessed and after.pushed_model != before.pushed_model, after.to_text()
  # Compared with the first model, the one pushed (the Resolver's LatestPushedModelStrategy).
  store = metadata.open_sqlite(first.metadata_path, read_only=True)
  first_run, second_run = (metadata.executions_by_node(store, metadata.find_run(
      store, first.pipeline_name, summary.run_id)) for summary in (before, after))
  assert [a.uri for a in second_run['Evaluator'].inputs['baseline_model']] == [
      a.uri for a in first_run['Trainer'].outputs['model']]
  assert 'reviewed clips' not in after.to_text()  # no refusal on them

  # The new model scores every reviewed false alarm lower, the held-out ones below 0.5.
  clips = [str(out / r['path']) for r in rows]
  old = [p.positive_probability for p in predict.predict(clips, before.pushed_model)]
  new = [p.positive_probability for p in predict.predict(clips, after.pushed_model)]
  assert min(old) >= 0.5 and all(n < o for n, o in zip(new, old)), (old, new)
  assert all(n < 0.5 for n, r in zip(new, rows) if r['split'] == 'test'), (new, rows)
