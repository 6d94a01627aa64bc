"""Beam options: TFX builds no sdist of itself for the DirectRunner, and still does (or is told
where the code is) on other runners."""
import pytest
from tfx.utils import dependency_utils

from vivit_tfx.kubeflow.options import BEAM_PRESETS
from vivit_tfx.pipeline import beam_options, configs


@pytest.fixture
def sdist_builds(monkeypatch):
  """The sdists TFX's Beam executors would build (none is built: each is only counted)."""
  built = []
  monkeypatch.setattr(dependency_utils, 'build_ephemeral_package',
                      lambda: built.append(1) or '/nowhere/tfx_ephemeral.tar.gz')
  return built


@pytest.mark.parametrize('beam_args', [
    '--direct_num_workers=1',  # the default
    BEAM_PRESETS['direct'],    # multi-process, as in a Kubeflow pod
    '--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_threading'])
def test_the_direct_runner_builds_no_tfx_sdist(beam_args, sdist_builds):
  args = configs.PipelineConfig(beam_args=beam_args).beam_pipeline_args
  assert args[:-1] == beam_args.split() and args[-1] == beam_options.NOTHING_TO_STAGE
  assert dependency_utils.make_beam_dependency_flags(args) == args
  assert not sdist_builds


def test_other_runners_and_named_dependencies_are_left_to_tfx(sdist_builds):
  flink = BEAM_PRESETS['flink'].split()
  assert configs.PipelineConfig(beam_args=BEAM_PRESETS['flink']).beam_pipeline_args == flink
  dependency_utils.make_beam_dependency_flags(flink)
  assert len(sdist_builds) == 1  # TFX stages its own code for the Flink workers
  own = ['--setup_file=./setup.py']
  assert beam_options.for_tfx(own) == own  # the user's own dependencies, on the DirectRunner
  dataflow = BEAM_PRESETS['dataflow'].split()  # names the pipeline's image
  assert beam_options.for_tfx(dataflow) == dataflow
  dependency_utils.make_beam_dependency_flags(dataflow)
  assert len(sdist_builds) == 1
