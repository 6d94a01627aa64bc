"""Shared fixtures: tiny synthetic videos and ingested clips, made once per test session."""
import importlib.util
import json
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import vivit_tfx  # pylint: disable=g-import-not-at-top,unused-import  # oneDNN on, before TF starts
import numpy as np  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

# Two logical CPU devices for the whole session, set before TensorFlow starts: the shared
# pipeline run (`first_run`) trains under MirroredStrategy over both, rehearsing a two-GPU
# machine. Everything else runs on the first, as before.
try:
  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices('CPU')[0], [tf.config.LogicalDeviceConfiguration()] * 2)
except RuntimeError:  # TensorFlow already started (a plugin imported and used it)
  pass

# Under pytest-xdist (pytest.ini: two workers on a 2-core machine) each worker computes on one
# thread: two workers of two threads each only contended for the same two cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
  tf.config.threading.set_intra_op_parallelism_threads(1)

from vivit_tfx.data import ingest, synthetic  # pylint: disable=g-import-not-at-top
from vivit_tfx.pipeline import configs  # pylint: disable=g-import-not-at-top

# The session fixtures that run the whole pipeline (minutes each on CI's 2 cores).
PIPELINE_RUNS = ('first_run', 'trained_run')


def load_script(name: str):
  """A module of the repository's scripts/ folder (not a package), by file name without .py."""
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(os.path.dirname(__file__), os.pardir, 'scripts', f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.hookimpl(tryfirst=True)  # before xdist's, which names each test's group in its id
def pytest_collection_modifyitems(config, items):
  """Work units for pytest-xdist (`--dist loadgroup`): every test file that needs a pipeline
  run (`PIPELINE_RUNS`) in one group, so one worker makes each run once, scheduled first (the
  longest unit); every other file a unit of its own, so its module fixtures are made once."""
  del config
  file_of = lambda item: item.nodeid.split('::')[0]
  shared = {file_of(i) for i in items if set(PIPELINE_RUNS) & set(i.fixturenames)}
  for item in items:
    group = 'pipeline-runs' if file_of(item) in shared else file_of(item)
    item.add_marker(pytest.mark.xdist_group(group))
  items.sort(key=lambda item: file_of(item) not in shared)  # stable: file order kept

# Tiny everything: CPU-only CI on 2 cores.
TINY_CLIP = ingest.ClipConfig(num_frames=8, frame_size=(32, 32))


@pytest.fixture(scope='session')
def video_root(tmp_path_factory):
  """24 synthetic videos (mp4 + avi, some shorter than 8 frames) in the RLVS layout."""
  root = str(tmp_path_factory.mktemp('videos'))
  synthetic.generate(root, synthetic.SyntheticConfig(num_clips=24, seed=7), workers=2,
                     progress=False)
  return root


@pytest.fixture(scope='session')
def clips_dir(video_root, tmp_path_factory):
  """The tiny videos ingested to split TFRecords (no bad inputs)."""
  out = str(tmp_path_factory.mktemp('clips'))
  ingest.ingest(video_root, out, clip=TINY_CLIP, workers=2, progress=False)
  return out


def tiny_config(clips_dir, root, **changes) -> configs.PipelineConfig:
  """A pipeline config small enough for a 2-core CI machine (32 px clips, a few steps)."""
  settings = dict(
      # The linear tokenizer: these runs test wiring (VideoMAE pre-training included), not
      # learning; the main job's default (the hybrid) is `trained_run`'s.
      preset='vivit-tiny',
      output_root=str(root), clips_dir=clips_dir, frame_size=(32, 32), image_size=(32, 32),
      vivit_overrides=json.dumps({'tubelet_size': [2, 8, 8], 'hidden_size': 32,
                                  'num_layers': 2, 'mlp_dim': 64}),
      train_steps=6, steps_per_epoch=3, eval_steps=1, batch_size=8, accuracy_threshold=0.0,
      min_test_examples_per_class=1, min_test_fraction_per_class=0.0)
  return configs.PipelineConfig(**{**settings, **changes}).resolve()


def one_step_from_the_same_start(config, devices, x, y, objective=None):
  """One `fit` step of a ViViT on `devices` (a MirroredStrategy, reduced on one device: no
  collective instance keys to clash with the in-process pipeline run's strategy over the same
  two devices) from seeded non-trivial weights (the head starts at zero): the model (its
  `history` the step's logs). `objective`: a `training.Supervised` to train with (x may then
  hold more than the labelled clips, as FixMatch's dict does)."""
  import keras  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.trainer import training  # pylint: disable=g-import-not-at-top
  from vivit_tfx.models.checkpoints.initialise import initialised_vivit  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(1)
  strategy = tf.distribute.MirroredStrategy(
      devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  with strategy.scope():
    model = initialised_vivit(config)
    for v in model.trainable_variables:
      v.assign(np.random.default_rng(7).normal(0, 0.2, v.shape).astype(np.float32))
    training.compile_model(model, config, total_steps=100_000, objective=objective)
  if objective is None:
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
  else:
    training.build_loss_and_metrics(
        model, tf.data.Dataset.from_tensors((objective.labelled(x), y)))
    model.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0)
  return model


def cli_args(config: configs.PipelineConfig) -> list:
  """`vivit-tfx run` options that reproduce `config` (only the fields off their default)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  args = []
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if value != field.default:
      text = 'x'.join(map(str, value)) if isinstance(value, tuple) else str(value)
      args += ['--' + field.name.replace('_', '-'), text]
  return args



# The upstream chain every pushed model has in ML Metadata (local and Kubeflow stores alike).
LINEAGE_CHAIN = ['PushedModel', 'Pusher', 'Model', 'Trainer', 'TransformGraph', 'Transform',
                 'Schema', 'ValidationGate', 'ExampleStatistics', 'StatisticsGen', 'Examples']


def has_lineage_path(graph, names) -> bool:
  """Is there an upstream path through nodes named (artifact type / execution node) `names`?"""
  def name(key):
    n = graph.nodes[key]
    return n.type if n.kind == 'artifact' else n.label
  frontier = [graph.root] if name(graph.root) == names[0] else []
  for wanted in names[1:]:
    frontier = [s for k in frontier for s, _ in graph.parents(k) if name(s) == wanted]
  return bool(frontier)


# Two steps of VideoMAE pre-training with a one-block decoder: the first run's PretrainTrainer.
TINY_PRETRAIN = dict(pretrain=True, pretrain_steps=2, pretrain_overrides=json.dumps(
    {'batch_size': 4, 'decoder_hidden_size': 16, 'decoder_num_layers': 1,
     'decoder_num_heads': 2, 'decoder_mlp_dim': 32}))


def unlabeled_footage(video_root, folder) -> str:
  """Two of the videos in no layout (no class folders, one nested) and a stray text file."""
  import shutil  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(folder, 'cam1', 'day2'))
  for cls, where in (('Violence', os.path.join('cam1', 'day2')), ('NonViolence', '')):
    name = sorted(os.listdir(os.path.join(video_root, cls)))[0]
    shutil.copy(os.path.join(video_root, cls, name), os.path.join(folder, where, name))
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('not a video')
  return str(folder)


@pytest.fixture(scope='session')
def first_run(clips_dir, video_root, tmp_path_factory):
  """One LocalDagRunner run of the whole pipeline on the tiny clips, VideoMAE pre-training
  on the train split plus unlabelled footage included: (config, run id). The Trainer runs
  the ViT presets' recipe at tiny size (accumulation, AdamW decay, clipping) under
  MirroredStrategy over the two logical CPU devices; the PretrainTrainer runs under it too."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import prepare  # pylint: disable=g-import-not-at-top
  from vivit_tfx.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('e2e')
  config = tiny_config(clips_dir, root, distribution='mirrored', batch_size=4,
                       vivit_overrides=json.dumps({
                           'tubelet_size': [2, 8, 8], 'hidden_size': 32, 'num_layers': 2,
                           'mlp_dim': 64, 'accumulation_steps': 2, 'weight_decay': 0.05,
                           'clipnorm': 1.0}),
                       unlabeled_videos=unlabeled_footage(video_root, root / 'footage'),
                       unlabeled_use='pretraining', **TINY_PRETRAIN)
  prepare.prepare_unlabeled(config, progress=False)
  console = io.StringIO()
  with contextlib.redirect_stdout(console):
    run_id = local_runner.run_pipeline(config)
  print(console.getvalue())
  assert ('on MirroredStrategy with 2 replica(s): 16 clips per step (2 accumulation step(s) '
          'of 8)') in console.getvalue()
  assert ('PretrainTrainer: VideoMAE on MirroredStrategy with 2 replica(s): 8 clips per step'
          in console.getvalue())
  return config, run_id


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory):
  """The main job's code path (synthetic videos → ingest → pipeline → report) on 120 videos,
  trained until it has learned its data: (config, RunSummary). Every test that compares model
  outputs (serving, views, predict, REST, review page, timeline, watch) runs on this model:
  its test accuracy is ≥ 0.9 and its scores spread over the test clips, so a comparison of
  the wrong frames, view or class would show."""
  from vivit_tfx.pipeline import local_runner  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp('trained')
  synthetic.generate(str(root / 'videos'), synthetic.SyntheticConfig(num_clips=120),
                     progress=False)
  config = configs.PipelineConfig(
      output_root=str(root / 'output'), videos_dir=str(root / 'videos'),
      clips_dir=str(root / 'clips'), synthetic_clips=120, train_steps=250, steps_per_epoch=50,
      eval_steps=2).resolve()
  summary = local_runner.run(config, progress=False)
  assert summary.blessed and summary.test_metrics['binary_accuracy'] >= 0.9, summary
  scores, labels = split_scores(config.clips_dir, summary.pushed_model)
  assert np.mean((scores > 0.5) == labels) >= 0.9, (scores, labels)  # served as evaluated
  assert np.ptp(scores) > 0.5, scores  # confident both ways, not one score for every clip
  return config, summary


def split_scores(clips_dir: str, model_dir: str):
  """(serving_default's positive-class scores [N], labels [N]) of the test split's records."""
  import glob  # pylint: disable=g-import-not-at-top
  from vivit_tfx.data import features  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(clips_dir, 'test', '*.tfrecord')))
  records = [r.numpy() for r in tf.data.TFRecordDataset(files)]
  labels = [tf.train.Example.FromString(r).features.feature[features.LABEL].int64_list.value[0]
            for r in records]
  serve = tf.saved_model.load(model_dir).signatures['serving_default']
  scores = serve(examples=tf.constant(records))['probabilities'].numpy()[:, 0]
  return scores, np.array(labels)
