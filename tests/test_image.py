"""The distribution and the pipeline image, checked statically (no Docker here): only the
`vivit_tfx` import name is installed; the image copies Beam's boot entrypoint from the Beam
SDK image of the pinned version, installs the project's wheel (not editable, no test
dependencies) and has a GPU target with TF's CUDA libraries."""
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from vivit_tfx.kubeflow import runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILE = os.path.join(REPO, 'vivit_tfx', 'kubeflow', 'Dockerfile')


def _pins():
  with open(os.path.join(REPO, 'constraints.txt')) as f:
    return dict(line.strip().split('==') for line in f if '==' in line and
                not line.startswith('#'))


def _stages():
  """[(stage name, base, [(instruction, arguments)])] with line continuations joined."""
  with open(DOCKERFILE) as f:
    text = re.sub(r'\\\n', ' ', f.read())
  stages = []
  for line in text.splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    instruction, _, rest = line.partition(' ')
    if instruction.upper() == 'FROM':
      base, _, name = rest.partition(' AS ')
      stages.append((name.strip(), base.strip(), []))
    elif stages:
      stages[-1][2].append((instruction.upper(), rest.strip()))
  return stages


def test_beam_boot_entrypoint_from_the_pinned_beam_sdk_image():
  stages = {name: (base, body) for name, base, body in _stages()}
  version = _pins()['apache-beam']
  python = '.'.join(map(str, sys.version_info[:2]))
  assert stages['beam'][0] == f'apache/beam_python{python}_sdk:{version}'
  runtime = stages['runtime'][1]
  assert ('COPY', '--from=beam /opt/apache/beam /opt/apache/beam') in runtime
  assert ('ENTRYPOINT', '["/opt/apache/beam/boot"]') in runtime


def test_wheel_install_without_editable_or_test_dependencies():
  text = ' '.join(args for _, _, body in _stages() for kind, args in body if kind == 'RUN')
  assert 'pip install' in text and '/tmp/wheels/*.whl' in text
  assert not re.search(r'(^|\s)(-e|--editable)(\s|$)', text)
  assert 'pytest' not in text and 'requirements.txt' not in text  # requirements has pytest


def test_gpu_target_has_tf_cuda_libraries_and_cpu_is_the_default():
  stages = _stages()
  assert stages[-1][0] == 'cpu'  # `docker build` without --target
  gpu = next(body for name, _, body in stages if name == 'gpu')
  tf_pin = _pins()['tensorflow']
  assert any(f'tensorflow[and-cuda]=={tf_pin}' in args for kind, args in gpu if kind == 'RUN')


def test_image_holds_the_schema_compile_points_at():
  runtime = next(body for name, _, body in _stages() if name == 'runtime')
  assert ('COPY', f'vivit_tfx/schemas/clip_schema.pbtxt {runner.IMAGE_SCHEMA_FILE}') in runtime
  with open(os.path.join(REPO, '.dockerignore')) as f:
    ignored = f.read().split()
  assert {'.venv', '.git', 'tests'} <= set(ignored)


def test_distribution_installs_only_the_vivit_tfx_package(tmp_path):
  """Build the wheel from a copy of the sources; its only top-level import name is vivit_tfx."""
  src = tmp_path / 'src'
  src.mkdir()
  for name in ('setup.py', 'README.md'):
    shutil.copy(os.path.join(REPO, name), src)
  shutil.copytree(os.path.join(REPO, 'vivit_tfx'), src / 'vivit_tfx',
                  ignore=shutil.ignore_patterns('__pycache__'))
  result = subprocess.run(
      [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
       '--wheel-dir', str(tmp_path / 'dist'), str(src)], capture_output=True, text=True,
      timeout=300, check=False)
  if result.returncode and 'No module named' in result.stderr:
    pytest.skip(f'cannot build wheels here: {result.stderr.strip().splitlines()[-1]}')
  assert result.returncode == 0, result.stderr
  [wheel] = os.listdir(tmp_path / 'dist')
  with zipfile.ZipFile(tmp_path / 'dist' / wheel) as z:
    names = z.namelist()
  assert {n.split('/')[0] for n in names if '.dist-info/' not in n} == {'vivit_tfx'}
  assert 'vivit_tfx/schemas/clip_schema.pbtxt' in names
  assert 'vivit_tfx/components/video_example_gen/executor.py' in names
