"""The distribution and the pipeline image, checked statically (no Docker here) from the
Dockerfile's parsed instructions: only the `vivit_tfx` import name is installed; the image
copies Beam's boot entrypoint from the Beam SDK image of the pinned version, installs the wheel
its own stage builds from the sources (not editable, with the pins, no test dependencies), and
that wheel requires every third-party module the pipeline's steps import, and not the web and
plotting extras; a GPU target has TF's CUDA libraries."""
import ast
import glob
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vivit_tfx import extras
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


def _runs(body):
  """The commands of a stage's RUN instructions, each split into words."""
  return [shlex.split(command) for kind, args in body if kind == 'RUN'
          for command in args.split('&&')]


def _copies(body):
  """{destination: (source stage or '', source)} of a stage's COPY instructions."""
  out = {}
  for kind, args in body:
    if kind == 'COPY':
      words = args.split()
      stage = next((w.split('=', 1)[1] for w in words if w.startswith('--from=')), '')
      *sources, destination = [w for w in words if not w.startswith('--')]
      out[destination] = (stage, sources[0])
  return out


def test_runtime_installs_the_wheel_built_from_the_sources_with_the_pins():
  stages = {name: body for name, _, body in _stages()}
  [build] = [c for c in _runs(stages['wheel']) if c[:2] == ['pip', 'wheel']]
  assert build[-1] == '.' and ('WORKDIR', '/src') in stages['wheel']
  assert {'setup.py', 'vivit_tfx/'} <= {w for _, args in stages['wheel'] for w in args.split()}
  wheels = build[build.index('--wheel-dir') + 1]
  copies = _copies(stages['runtime'])
  [(into, _)] = [(d, s) for d, s in copies.items() if s == ('wheel', wheels)]
  [install] = [c for c in _runs(stages['runtime']) if c[:2] == ['pip', 'install'] and
               any(w.endswith('.whl') for w in c)]
  assert os.path.join(into, '*.whl') in install  # the built wheel, not the sources
  assert copies[install[install.index('-c') + 1]] == ('', 'constraints.txt')
  assert not {'-e', '--editable', '-r', '--requirement'} & set(install)  # no test deps


def test_entrypoint_program_is_copied_into_the_image():
  stages = {name: (base, body) for name, base, body in _stages()}
  runtime = stages['runtime'][1]
  [program] = [json.loads(args)[0] for kind, args in runtime if kind == 'ENTRYPOINT']
  [(stage, source)] = [s for d, s in _copies(runtime).items() if program.startswith(d + '/')]
  assert stage == 'beam' and program.startswith(source + '/')
  assert stages['beam'][0].startswith('apache/beam_python')


def _requirements(requirement: str, seen: set) -> None:
  """Adds the distribution of `requirement` and, with its extras, everything it requires."""
  req = Requirement(requirement)
  name = canonicalize_name(req.name)
  if name in seen:
    return
  seen.add(name)
  for line in importlib.metadata.requires(req.name) or []:
    dep = Requirement(line)
    if dep.marker is None or any(dep.marker.evaluate({'extra': e}) for e in req.extras or {''}):
      _requirements(str(dep.name) + (f'[{",".join(dep.extras)}]' if dep.extras else ''), seen)


def _setup_argument(name: str):
  """The literal value of one keyword of setup.py's setup() call."""
  with open(os.path.join(REPO, 'setup.py')) as f:
    call = next(n for n in ast.walk(ast.parse(f.read())) if isinstance(n, ast.Call) and
                getattr(n.func, 'id', '') == 'setup')
  return ast.literal_eval(next(k.value for k in call.keywords if k.arg == name))


def _core_distributions() -> set:
  """Every distribution the wheel's install_requires pull in (what the image installs)."""
  installed: set = set()
  for requirement in _setup_argument('install_requires'):
    _requirements(requirement, installed)
  return installed


def test_wheel_requires_what_the_trainer_and_transform_import():
  """Third-party modules imported by the code the pipeline's steps run (data/, models/, components/)
  come from distributions the wheel's install_requires pull in (with their extras)."""
  installed = _core_distributions()
  imported = set()
  for folder in ('data', 'schemas', 'models', 'components'):
    for path in glob.glob(os.path.join(REPO, 'vivit_tfx', folder, '**', '*.py'), recursive=True):
      with open(path) as f:
        for node in ast.walk(ast.parse(f.read())):
          if isinstance(node, ast.Import):
            imported |= {a.name.split('.')[0] for a in node.names}
          elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split('.')[0])
  third_party = imported - set(sys.stdlib_module_names) - {'vivit_tfx', '__future__'}
  providers = importlib.metadata.packages_distributions()  # from top_level.txt, when present
  missing = {m for m in third_party
             if not {canonicalize_name(d) for d in providers.get(m, [m])} & installed}
  assert 'cv2' in third_party and 'tensorflow_transform' in third_party
  assert not missing, f'imported by the pipeline code, not required by the wheel: {missing}'


def test_image_installs_the_core_without_the_serve_and_report_extras():
  """The web and plotting stack are setup.py extras: no install in the image names one, and
  the core's requirements do not pull their distributions in; each extra provides the modules
  `extras.MODULES` names; requirements.txt (what scripts/bootstrap.sh installs for a
  developer) holds every extra."""
  extras_require = _setup_argument('extras_require')
  assert set(extras_require) == set(extras.MODULES) == {'serve', 'report'}
  installs = [c for _, _, body in _stages() for c in _runs(body) if c[:2] == ['pip', 'install']]
  assert installs and not [w for c in installs for w in c if '.whl[' in w or w.startswith('.[')]
  extra_distributions = {canonicalize_name(Requirement(r).name)
                         for requirements in extras_require.values() for r in requirements}
  assert {'matplotlib', 'starlette', 'uvicorn'} <= extra_distributions
  assert not extra_distributions & _core_distributions()
  providers = importlib.metadata.packages_distributions()  # from top_level.txt, when present
  for extra, modules in extras.MODULES.items():
    assert {canonicalize_name(Requirement(r).name) for r in extras_require[extra]} == {
        canonicalize_name(d) for m in modules for d in providers.get(m, [m])}, extra
  with open(os.path.join(REPO, 'requirements.txt')) as f:
    developer = {canonicalize_name(Requirement(line.strip()).name) for line in f
                 if line.strip() and not line.startswith('#')}
  assert extra_distributions <= developer


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
