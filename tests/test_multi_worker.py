"""The Trainer's run_fn as two MultiWorkerMirroredStrategy workers over 127.0.0.1 (TF_CONFIG):
both finish with equal weights; only the chief writes the SavedModel, warm-up requests, clip
config and logs; with the ViT presets' recipe (gradient accumulation included). The Transform
graph and data accessor are stood in for by in-memory stubs (tests/run_fn_harness.py)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = os.path.join(ROOT, 'tests', 'run_fn_harness.py')
# Tiny dimensions, the ViT presets' recipe: accumulation, AdamW decay, clipping.
CUSTOM = {'vivit': dict(num_frames=4, image_size=[16, 16], tubelet_size=[2, 8, 8],
                        hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, batch_size=2,
                        checkpoint_steps=2, accumulation_steps=2, weight_decay=0.05,
                        clipnorm=1.0)}


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _files(path):
  return [os.path.join(r, f) for r, _, names in os.walk(path) for f in names]


def test_run_fn_as_two_multi_worker_mirrored_workers(tmp_path):
  workers = [f'127.0.0.1:{p}' for p in _free_ports(2)]
  procs = []
  for index in range(2):
    env = {**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3',
           'CUDA_VISIBLE_DEVICES': '',
           'TF_CONFIG': json.dumps({'cluster': {'worker': workers},
                                    'task': {'type': 'worker', 'index': index}})}
    procs.append(subprocess.Popen([sys.executable, HARNESS, str(tmp_path), json.dumps(CUSTOM)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  results = []
  for p in procs:
    try:
      results.append(p.communicate(timeout=420))
    finally:
      if p.poll() is None:
        p.kill()
  for index, (p, (out, err)) in enumerate(zip(procs, results)):
    trace = [l for l in err.splitlines() if l.startswith(("  File", "Traceback")) or "Error" in l]
    assert p.returncode == 0 and f"DONE {index}" in out, "\n".join(trace[-30:])
  chief, other = (np.load(tmp_path / f'weights_{i}.npz') for i in range(2))
  assert len(chief.files) == len(other.files) > 0
  for key in chief.files:
    np.testing.assert_array_equal(chief[key], other[key])
  served = _files(tmp_path / 'serving_0')
  assert any(f.endswith('saved_model.pb') for f in served)
  assert any(f.endswith('tf_serving_warmup_requests') for f in served)
  assert any(f.endswith('clip_config.json') for f in served)
  assert not os.path.exists(tmp_path / 'serving_1')  # the other worker exports nothing
  assert _files(tmp_path / 'model_run_0')  # the chief's logs and checkpoints
  assert not _files(tmp_path / 'model_run_1')  # scratch checkpoints removed, no logs
