"""The export holds the model, not the optimizer; everything goes through tf.io.gfile (tested on
TF's ram:// filesystem, where no local path exists); warm-up requests are synthetic clips."""
import json

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from vivit_tfx.bench.export_size import DecodeOnlyTransform, directory_bytes
from vivit_tfx.data import drift_stats, features
from vivit_tfx.data.clip_config import ModelClipConfig
from vivit_tfx.models.checkpoints.initialise import initialised_vivit
from vivit_tfx.models.network.vivit_config import ViViTConfig
from vivit_tfx.models.trainer import export, training

CONFIG = ViViTConfig(num_frames=4, image_size=(16, 16), tubelet_size=(2, 8, 8), hidden_size=64,
                     num_layers=2, num_heads=4, mlp_dim=256, warmup_steps=0)
DIR = 'ram://export_test/serving/1'


def test_export_is_the_model_only_on_ram_filesystem_with_synthetic_warmup():
  model = initialised_vivit(CONFIG)
  training.compile_model(model, CONFIG, total_steps=2)
  rng = np.random.default_rng(0)
  x, y = rng.random((4, 4, 16, 16, 3)).astype(np.float32), np.array([0, 1, 0, 1])
  model.fit(x, y, batch_size=4, epochs=2, verbose=0)  # AdamW slots now exist: 2x the params
  assert sum(int(tf.size(v)) for v in model.optimizer.variables) > 2 * model.count_params()
  source = {'init_checkpoint': 'gs://bucket/vit.npz', 'init_checkpoint_sha256': 'ab' * 32}
  train = 'ram://export_test/Split-train/data_tfrecord-00000-of-00001.gz'  # as ExampleGen's
  with tf.io.TFRecordWriter(train, 'GZIP') as writer:
    for record in export.synthetic_examples(4, (16, 16), count=6):
      writer.write(record)
  export.export(model, CONFIG, DecodeOnlyTransform(4, (16, 16)), DIR,
                ModelClipConfig(num_frames=4, frame_size=(16, 16)), source,
                train_files=['ram://export_test/Split-train/*'])

  # Size: the parameters' bytes plus the graph; no optimizer state, no second weights copy.
  sizes = directory_bytes(DIR)
  params_bytes = 4 * model.count_params()
  assert params_bytes <= sizes['variables'] < 1.1 * params_bytes + 20_000, sizes
  files = [f for _, _, names in tf.io.gfile.walk(DIR) for f in names]
  assert not [f for f in files if f.endswith('.h5')], files

  # Warm-up: a batch of 1 and a batch of 4 synthetic clips, never records of the user's data.
  requests = [prediction_log_pb2.PredictionLog.FromString(r.numpy()).predict_log.request
              for r in tf.data.TFRecordDataset(f'{DIR}/{export.WARMUP_FILE}')]
  batches = [tf.make_ndarray(r.inputs['examples']).tolist() for r in requests]
  synthetic = export.synthetic_examples(4, (16, 16))
  assert [len(b) for b in batches] == [1, 4] and batches[1] == synthetic
  frames = tf.train.Example.FromString(synthetic[0]).features.feature[features.FRAMES]
  assert len(frames.bytes_list.value) == 4
  assert tf.io.decode_jpeg(frames.bytes_list.value[0]).shape == (16, 16, 3)

  # The served probabilities are the trained model's; the Keras model rebuilds from the export.
  serve = tf.saved_model.load(DIR).signatures['serving_default']
  probabilities = serve(examples=tf.constant(synthetic))[export.SERVING_OUTPUT].numpy()
  clips = DecodeOnlyTransform(4, (16, 16)).transform_features_layer()(
      {features.FRAMES: tf.constant([tf.train.Example.FromString(s).features.feature[
          features.FRAMES].bytes_list.value for s in synthetic])})[features.CLIP_XF]
  np.testing.assert_allclose(probabilities, tf.sigmoid(model(clips)).numpy(), atol=1e-5)
  # The drift reference the model carries: the train split's 6 clips, scored as served.
  reference = drift_stats.model_reference(DIR)
  assert drift_stats.reference_clips(reference) == 6
  score = [f for f in reference.datasets[0].features if f.path.step[0] == 'score'][0]
  served = serve(examples=tf.constant(export.synthetic_examples(4, (16, 16), count=6)))[
      export.SERVING_OUTPUT].numpy()
  assert abs(score.num_stats.mean - served.mean()) < 1e-4
  rebuilt = export.load_keras_model(DIR)
  np.testing.assert_allclose(rebuilt(clips).numpy(), model(clips).numpy(), atol=1e-5)

  with tf.io.gfile.GFile(f'{DIR}/{export.CLIP_CONFIG_FILE}') as f:
    clip = json.load(f)
  assert clip['init_checkpoint'] == 'gs://bucket/vit.npz' and clip['num_frames'] == 4
  assert 'num_frames' not in clip['vivit']  # held once, at the top level
  assert ViViTConfig.from_dict(ModelClipConfig.from_dict(clip).architecture()) == CONFIG


def test_a_model_exports_without_a_drift_reference_when_there_is_no_train_split(capsys):
  export.write_drift_reference('ram://export_test/none/1', ['ram://export_test/none/train/*'])
  assert capsys.readouterr().out == ('Trainer: no drift reference in the model: no train split '
                                     'records match ram://export_test/none/train/*\n')
  assert not tf.io.gfile.exists('ram://export_test/none/1')


def test_mixed_precision_model_exports_float32():
  config = CONFIG.replace(precision='mixed_bfloat16', hidden_size=16, mlp_dim=32)
  model = initialised_vivit(config)
  copy = export.serving_copy(model)
  assert copy.encoder.blocks[0].mlp_in.compute_dtype == 'float32'
  x = np.random.default_rng(1).random((2, 4, 16, 16, 3)).astype(np.float32)
  np.testing.assert_allclose(copy(x).numpy(), model(x).numpy(), atol=0.05)  # bf16 rounding


class _StoredRecords(DecodeOnlyTransform):
  """Records of N slots; the 'transform' hands the model one blank clip per record."""

  def __init__(self, stored: int):
    super().__init__(stored, (16, 16))

  def transform_features_layer(self):
    return lambda inputs: {features.CLIP_XF: tf.zeros(
        [tf.shape(inputs[features.FRAMES])[0], 4, 16, 16, 3])}


class _CountingModel:
  """Stands in for the network: counts the clips it is asked to score."""

  def __init__(self):
    self.clips = tf.Variable(0)

  def __call__(self, clips, training=False):
    self.clips.assign_add(tf.shape(clips)[0])
    return tf.zeros([tf.shape(clips)[0], 1])


def test_a_record_of_t_frames_is_scored_once_a_longer_one_k_times():
  model = _CountingModel()
  serve = export.serving_signatures(model, _StoredRecords(12), 2,
                                    ModelClipConfig(num_frames=4, num_views=3, sample_fps=8.0,
                                                    frame_size=(16, 16)))[
                                        'serving_default']
  jpeg = tf.io.encode_jpeg(tf.zeros([16, 16, 3], tf.uint8)).numpy()

  def record(n):
    return tf.train.Example(features=tf.train.Features(feature={features.FRAMES: (
        tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg] * n)))})).SerializeToString()

  assert serve(examples=tf.constant([record(4), record(4)]))[export.SERVING_OUTPUT].shape == (
      2, 1)
  assert int(model.clips.numpy()) == 2  # what watch and the timeline send: one view each
  serve(examples=tf.constant([record(10)]))
  assert int(model.clips.numpy()) == 2 + 3  # a stored video: K = 3 views
