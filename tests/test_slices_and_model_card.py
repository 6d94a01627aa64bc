"""Evaluation slices by source and duration band, the per-slice minimum that gates the
blessing, the report's per-slice table and the model card beside the pushed model."""
import glob
import os
import re

import pytest
import tensorflow as tf

from vivit_tfx import cli
from vivit_tfx.audit import metadata, model_card, report, tfma_results
from vivit_tfx.data import clip_example, features, layouts
from vivit_tfx.data.video_reader import VideoInfo
from vivit_tfx.pipeline import configs
from vivit_tfx.pipeline.pipeline import eval_config


def test_source_is_the_layout_then_folders_that_name_neither_class_nor_split():
  classes = ('NonViolence', 'Violence')
  assert layouts.source_of('Violence/v1.mp4', 'rlvs', classes) == 'rlvs'
  assert layouts.source_of(os.path.join('Violence', 'cam2', 'v1.mp4'), 'rlvs',
                           classes) == 'rlvs/cam2'
  assert layouts.source_of('train/Fight/a_0.avi', 'rwf2000', ('NonFight', 'Fight')) == 'rwf2000'
  assert layouts.source_of('cam1/day2/x.mp4', 'csv', classes) == 'csv/cam1/day2'
  assert [clip_example.duration_band(s) for s in (0.4, 5.0, 12.0, 30.0)] == [
      '0-5s', '5-10s', '10-30s', '30s+']
  info = VideoInfo(num_frames=16, fps=8.0, width=32, height=32)  # 2 s
  sliced = clip_example.to_example([b''], info, 1, 'Violence/v1', 'Violence/v1.mp4', 'rlvs')
  f = sliced.features.feature
  assert (f[features.SOURCE].bytes_list.value, f[features.DURATION_BAND].bytes_list.value) == (
      [b'rlvs'], [b'0-5s'])
  # Requests to a model (predict, timeline, watch) carry no slices.
  plain = clip_example.to_example([b''], info, 0, 'v', 'v.mp4')
  assert not set(features.SLICE_FEATURES) & set(plain.features.feature)


def _validate(config, slice_key, accuracy):
  """TFMA's own validator (the Evaluator's) on one slice's binary accuracy (of 10 videos), with
  the eval config a first run (no baseline yet: rubber stamp) validates by."""
  from tensorflow_model_analysis.evaluators import metrics_validator  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.metrics import metric_types  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.utils import config_util  # pylint: disable=g-import-not-at-top
  first_run = config_util.update_eval_config_with_defaults(eval_config(config), rubber_stamp=True)
  return metrics_validator.validate_metrics(
      (slice_key, {metric_types.MetricKey('binary_accuracy'): accuracy,
                   metric_types.MetricKey('example_count'): 10.0}), first_run)


def test_min_slice_accuracy_refuses_a_candidate_below_it_in_one_source(tmp_path):
  config = configs.PipelineConfig(output_root=str(tmp_path), clips_dir=str(tmp_path / 'clips'),
                                  min_test_examples_per_class=1)
  camera = (('source', 'rlvs/cam2'),)
  # Off by default: the source slices are measured, not gated (--accuracy-threshold 0.8 applies
  # to the whole split, each container and class, as before slices by source).
  assert _validate(config, camera, 0.5).validation_ok
  assert not _validate(config, (), 0.5).validation_ok
  gated = config.replace(min_slice_accuracy=0.7)
  refused = _validate(gated, camera, 0.5)
  assert not refused.validation_ok
  assert tfma_results.failure_lines(refused, ['NonViolence', 'Violence']) == [
      'accuracy on source=rlvs/cam2 0.50 < 0.70 (--min-slice-accuracy)']
  assert _validate(gated, (('duration_band', '0-5s'),), 0.75).validation_ok
  assert not _validate(gated, (('duration_band', '0-5s'),), 0.6).validation_ok
  assert configs.option_errors({'min_slice_accuracy': 1.5}) == [
      '--min-slice-accuracy must be within [0, 1], got 1.5']
  # `lineage --compare` names the bounds a run blessed by, this one too.
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  from vivit_tfx.audit import lineage  # pylint: disable=g-import-not-at-top
  settings = lineage.blessing_settings(json_format.MessageToJson(eval_config(gated)))
  assert settings == {'accuracy_threshold': 0.8, 'max_accuracy_drop': 0.0,
                      'min_slice_accuracy': 0.7, 'min_test_examples (label=0)': 1,
                      'min_test_examples (label=1)': 1}, settings


def test_ingested_clips_carry_their_slices(trained_run):
  config, _ = trained_run
  record = next(iter(tf.data.TFRecordDataset(glob.glob(
      os.path.join(config.clips_dir, 'test', '*.tfrecord')))))
  f = tf.train.Example.FromString(record.numpy()).features.feature
  assert f[features.SOURCE].bytes_list.value == [b'rlvs']
  assert f[features.DURATION_BAND].bytes_list.value[0] in (b'0-5s', b'5-10s', b'10-30s')


@pytest.fixture(scope='module')
def evaluated_slices(trained_run):
  """(config, summary, [slice names of the trained run's evaluation])."""
  config, summary = trained_run
  store = metadata.open_sqlite(config.metadata_path, read_only=True)
  run = metadata.find_run(store, config.pipeline_name, summary.run_id)
  evaluation = metadata.executions_by_node(store, run)['Evaluator'].outputs['evaluation'][0]
  names = [n for n, _ in tfma_results.metrics_by_slice(tfma_results.load(evaluation.uri),
                                                       ['NonViolence', 'Violence'])]
  assert 'source=rlvs' in names and any(n.startswith('duration_band=') for n in names), names
  return config, summary, names


def test_model_card_beside_the_pushed_model_lists_every_slice_with_intervals(evaluated_slices):
  config, summary, names = evaluated_slices
  pushed = summary.pushed_model
  version = os.path.basename(pushed)
  card = os.path.join(os.path.dirname(pushed), f'{version}{model_card.SUFFIXES[0]}')
  assert summary.model_card == card, summary.model_card
  assert f'  model card: {card}' in summary.to_text()
  text = open(card).read()
  page = open(card[:-len('.md')] + '.html').read()
  interval = r'\d\.\d\d \[\d\.\d\d, \d\.\d\d\] \(\d+/\d+\)'  # value [low, high] (k/n)
  for name in names:
    row = re.search(rf'^\| {re.escape(name)} \| (\d+) \| (.*)$', text, re.M)
    assert row, (name, text)
    assert re.match(interval, row.group(2)), row.group(0)  # accuracy with its interval
    assert f'<td>{name}</td>' in page
  assert re.search(r'\| train \| \d+ \| \d+ \| \d+ \|', text)  # classes and splits, counted
  for heading in ('Intended uses', 'Out-of-scope uses', 'Known limitations',
                  'Reporting a false alarm', 'Compared with the last pushed model'):
    assert f'## {heading}' in text and heading in page
  assert 'Wilson score interval' in text
  # Only its own two files, and the pushed SavedModel untouched beside them.
  assert sorted(os.listdir(os.path.dirname(pushed))) == sorted(
      ['.vivit-tfx-outputs.json', version, *[version + s for s in model_card.SUFFIXES]])


def test_model_card_never_replaces_a_file_it_did_not_write(evaluated_slices):
  config, summary, _ = evaluated_slices
  store = metadata.open_sqlite(config.metadata_path, read_only=True)
  run = metadata.find_run(store, config.pipeline_name, summary.run_id)
  page = summary.model_card[:-len('.md')] + '.html'
  os.remove(os.path.join(os.path.dirname(page), '.vivit-tfx-outputs.json'))  # as if a user's
  before = open(summary.model_card).read()
  with pytest.raises(ValueError, match='was not written by vivit-tfx'):
    model_card.write(store, run)
  assert open(summary.model_card).read() == before
  assert model_card.write(store, run, overwrite=True) == summary.model_card


def test_model_card_command_writes_a_past_runs_card_into_a_folder(evaluated_slices, tmp_path,
                                                                   capsys):
  """`vivit-tfx model-card`: the card of a run read back from ML Metadata, into a local folder
  (what a Kubeflow run, whose model is in gs://, gets), equal to the one `run` wrote."""
  config, summary, _ = evaluated_slices
  out = tmp_path / 'cards'
  store_args = ['--output-root', config.output_root, '--pipeline-name', config.pipeline_name]
  assert cli.main(['model-card', *store_args, '--out-dir', str(out)]) == 0
  written = out / f'{os.path.basename(summary.pushed_model)}{model_card.SUFFIXES[0]}'
  assert f'model card: {written}' in capsys.readouterr().out
  assert written.read_text() == open(summary.model_card).read()
  # A remote folder is refused in one line; a user's file of the same name is left as it is.
  assert cli.main(['model-card', *store_args, '--out-dir', 'gs://bucket/cards']) == 1
  assert '--out-dir DIR' in capsys.readouterr().err
  os.remove(out / '.vivit-tfx-outputs.json')  # the card is now a file the tool did not write
  assert cli.main(['model-card', *store_args, '--out-dir', str(out)]) == 1
  assert 'was not written by vivit-tfx' in capsys.readouterr().err


def test_report_shows_metrics_and_intervals_per_slice(evaluated_slices, tmp_path):
  config, summary, names = evaluated_slices
  page = open(report.build(config, summary.run_id, out_dir=str(tmp_path))).read()
  assert 'accuracy [95 % CI] (k/n)' in page
  for name in names:
    assert re.search(rf'<tr><td>{re.escape(name)}</td><td>\d+\.0000</td>', page), name


def test_blessing_needs_a_gain_on_the_held_out_reviewed_clips(tmp_path):
  from tensorflow_model_analysis.evaluators import metrics_validator  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.metrics import metric_specs  # pylint: disable=g-import-not-at-top
  from tensorflow_model_analysis.utils import config_util  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline.pipeline import reviewed_eval_config  # pylint: disable=g-import-not-at-top
  config = configs.PipelineConfig(output_root=str(tmp_path), min_reviewed_gain=0.05)
  # As the Evaluator validates when the resolver found a blessed model (the baseline).
  compared = config_util.update_eval_config_with_defaults(reviewed_eval_config(config),
                                                          has_baseline=True, rubber_stamp=True)
  keys = metric_specs.metric_thresholds_from_metrics_specs(compared.metrics_specs,
                                                           eval_config=compared)

  def check(gain):
    values = {('binary_accuracy', True): gain, ('example_count', False): 12.0}
    return metrics_validator.validate_metrics(
        ((), {k: values[(k.name, k.is_diff)] for k in keys}), compared)

  assert check(0.1).validation_ok
  refused = check(0.0)  # as good as the last pushed model on the reviewed clips: no gain
  assert not refused.validation_ok
  assert tfma_results.failure_lines(refused) == [
      'accuracy +0.00 against the last pushed model, a gain smaller than 0.05 '
      '(--min-reviewed-gain)']


def test_reviewed_clips_add_an_evaluator_and_hold_the_pusher_back(tmp_path):
  from tfx.components.example_gen import utils as example_gen_utils  # pylint: disable=g-import-not-at-top
  from tfx.dsl.compiler import compiler  # pylint: disable=g-import-not-at-top
  from tfx.proto import example_gen_pb2  # pylint: disable=g-import-not-at-top
  from tfx.utils import proto_utils  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline.pipeline import create_pipeline  # pylint: disable=g-import-not-at-top
  reviewed = tmp_path / 'reviewed'
  with pytest.raises(configs.ConfigError, match='--reviewed-clips .*: no test split'):
    configs.PipelineConfig(output_root=str(tmp_path), reviewed_clips=str(reviewed)).validate()
  (reviewed / 'test').mkdir(parents=True)
  pipeline = create_pipeline(configs.PipelineConfig(output_root=str(tmp_path),
                                                    reviewed_clips=str(reviewed)))
  assert {'ReviewedExampleGen', 'ReviewedEvaluator'} <= {c.id for c in pipeline.components}
  gen = next(c for c in pipeline.components if c.id == 'ReviewedExampleGen')
  protos = [proto_utils.json_to_proto(gen.exec_properties[k], kind()) for k, kind in (
      ('input_config', example_gen_pb2.Input), ('output_config', example_gen_pb2.Output))]
  assert example_gen_utils.generate_output_split_names(*protos) == ['test']  # not re-split
  nodes = {n.pipeline_node.node_info.id: n.pipeline_node
           for n in compiler.Compiler().compile(pipeline).nodes}
  assert 'ReviewedEvaluator' in str(nodes['Pusher'].inputs.conditionals)  # pushed only if blessed
  assert not nodes['Trainer'].inputs.conditionals
