"""Times one Conv3D gradient (filter) at the project's shapes with TensorFlow's oneDNN kernels
off and on (`TF_ENABLE_ONEDNN_OPTS`, read when TensorFlow starts: each setting runs in its own
process). Prints one table row per shape; the README's "Why the previous CI run took 74
minutes" quotes it.

  .venv/bin/python scripts/conv3d_gradient_probe.py
"""
import os
import subprocess
import sys

# (what, clips [B, T, H, W, C], kernel [t, h, w, C, D], strides, padding)
SHAPES = [
    ('learnability tubelet', (16, 8, 32, 32, 3), (4, 8, 8, 3, 32), (4, 8, 8), 'VALID'),
    ('vivit-tiny tubelet', (16, 8, 64, 64, 3), (2, 16, 16, 3, 192), (2, 16, 16), 'VALID'),
    ('hybrid stem conv', (16, 8, 64, 64, 6), (3, 3, 3, 6, 16), (1, 2, 2), 'SAME'),
]

PROBE = '''
import json, sys, time
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port as port
out = {'onednn': bool(port.IsMklEnabled())}
for what, shape, kernel, strides, padding in json.loads(sys.argv[1]):
  x = tf.random.normal(shape)
  k = tf.Variable(tf.random.normal(kernel))
  @tf.function
  def gradient():
    with tf.GradientTape() as tape:
      y = tf.reduce_sum(tf.nn.conv3d(x, k, [1, *strides, 1], padding))
    return tape.gradient(y, k)
  gradient()
  start = time.perf_counter()
  gradient()
  out[what] = time.perf_counter() - start
print(json.dumps(out))
'''


def main() -> None:
  import json  # pylint: disable=g-import-not-at-top
  results = {}
  for setting in ('0', '1'):
    env = {**os.environ, 'TF_ENABLE_ONEDNN_OPTS': setting, 'TF_CPP_MIN_LOG_LEVEL': '3'}
    done = subprocess.run([sys.executable, '-c', PROBE, json.dumps(SHAPES)], env=env,
                          capture_output=True, text=True, check=True)
    results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
  print('| Conv3D gradient | clips | kernel, strides | oneDNN off | oneDNN on |')
  print('|---|---|---|---|---|')
  for what, shape, kernel, strides, _ in SHAPES:
    print(f'| {what} | {"x".join(map(str, shape))} | {"x".join(map(str, kernel))}, '
          f'{"x".join(map(str, strides))} | {results["0"][what]:.3f} s | '
          f'{results["1"][what]:.3f} s |')


if __name__ == '__main__':
  main()
