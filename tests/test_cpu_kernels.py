"""oneDNN's CPU kernels are on wherever the package is imported first (vivit_tfx/__init__.py):
without them, on a CPU without AVX-512 (this CI's AMD EPYC), Eigen's Conv3D gradients made one
training step of the tiny learnability model take 8 s and the test suite 74 minutes."""
import os
import subprocess
import sys

PROBE = ('import vivit_tfx.cli, os\n'
         'from tensorflow.python.util import _pywrap_util_port as port\n'
         'print(os.environ["TF_ENABLE_ONEDNN_OPTS"], port.IsMklEnabled())')


def _probe(**env) -> str:
  environment = {k: v for k, v in os.environ.items() if k != 'TF_ENABLE_ONEDNN_OPTS'}
  environment.update(env, TF_CPP_MIN_LOG_LEVEL='3')
  done = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True,
                        env=environment, check=True)
  return done.stdout.strip().splitlines()[-1]


def test_importing_the_package_turns_onednn_on_before_tensorflow_starts():
  assert _probe() == '1 True'


def test_a_users_own_choice_is_kept():
  assert _probe(TF_ENABLE_ONEDNN_OPTS='0') == '0 False'
