"""The Trainer's run_fn as two MultiWorkerMirroredStrategy workers over 127.0.0.1 (TF_CONFIG):
both finish with equal weights; only the chief writes the SavedModel, warm-up requests, clip
config and logs. The Transform graph and data accessor are stood in for by in-memory stubs."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_WORKER = textwrap.dedent('''
    import json, os, sys, types
    import numpy as np, tensorflow as tf, tensorflow_transform as tft, keras
    keras.config.disable_traceback_filtering()
    from vivit_tfx.bench.export_size import DecodeOnlyTransform
    from vivit_tfx.models import export, features, model as trainer, training

    out = sys.argv[1]
    task = json.loads(os.environ['TF_CONFIG'])['task']['index']
    stub = DecodeOnlyTransform(4, (16, 16))
    stub.raw_metadata = types.SimpleNamespace(schema=None)
    tft.TFTransformOutput = lambda path: stub  # the Transform graph's stand-in

    def dataset_factory(file_pattern, options, schema):
      records = export.synthetic_examples(4, (16, 16), count=8)
      frames = tf.io.parse_example(records, stub.raw_feature_spec())
      labels = tf.constant([0, 1] * 4, tf.int64)
      data = tf.data.Dataset.from_tensor_slices((frames, labels))
      return data.repeat(options.num_epochs).batch(options.batch_size)  # eval: one pass

    fit = training.fit_resumable
    def recording_fit(model, *args, **kwargs):  # keeps the trained weights for the test
      ran = fit(model, *args, **kwargs)
      np.savez(os.path.join(out, f'weights_{task}.npz'), *model.get_weights())
      return ran
    training.fit_resumable = recording_fit

    config = dict(num_frames=4, image_size=[16, 16], tubelet_size=[2, 8, 8], hidden_size=16,
                  num_layers=1, num_heads=2, mlp_dim=32, batch_size=2, checkpoint_steps=2)
    trainer.run_fn(types.SimpleNamespace(
        custom_config={'vivit': config, 'distribution': 'auto', 'steps_per_epoch': 2,
                       'clip': {'num_frames': 4, 'frame_size': [16, 16]}},
        transform_output='unused', train_files=['unused'], eval_files=['unused'],
        data_accessor=types.SimpleNamespace(tf_dataset_factory=dataset_factory),
        train_steps=4, eval_steps=1,
        model_run_dir=os.path.join(out, f'model_run_{task}'),
        serving_model_dir=os.path.join(out, f'serving_{task}')))
    print('DONE', task)
''')


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
  script = tmp_path / 'worker.py'
  script.write_text(_WORKER)
  workers = [f'127.0.0.1:{p}' for p in _free_ports(2)]
  procs = []
  for index in range(2):
    env = {**os.environ, 'PYTHONPATH': ROOT, 'TF_CPP_MIN_LOG_LEVEL': '3',
           'CUDA_VISIBLE_DEVICES': '',
           'TF_CONFIG': json.dumps({'cluster': {'worker': workers},
                                    'task': {'type': 'worker', 'index': index}})}
    procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
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
