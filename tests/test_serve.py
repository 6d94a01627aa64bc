"""`vivit-tfx serve`: TF Serving's REST API over the pushed model, on a real local server."""
import base64
import json
import os
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from vivit_tfx import cli
from vivit_tfx.inference import predict, rest, server

pytestmark = pytest.mark.e2e


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def http(url: str, body=None, method=None):
  """(status, parsed JSON reply) for a GET, or a POST of `body` (bytes or a JSON-able object)."""
  if body is not None and not isinstance(body, bytes):
    body = json.dumps(body).encode()
  request = urllib.request.Request(url, data=body, method=method)
  try:
    with urllib.request.urlopen(request, timeout=60) as reply:
      return reply.status, json.loads(reply.read())
  except urllib.error.HTTPError as e:
    return e.code, json.loads(e.read())


@pytest.fixture(scope='module')
def served(trained_run, tmp_path_factory):
  """(base URL, model version folder, model name, videos folder) of a running server for the
  pushed model that has learned its data."""
  config, _ = trained_run
  base = os.path.join(config.serving_dir, config.model_name)
  settings = server.ServerConfig(model_dir=base, model_name=config.model_name,
                                 port=free_port(), max_request_bytes=256 << 10,
                                 work_dir=str(tmp_path_factory.mktemp('serve_work')))
  with server.BackgroundServer(settings) as url:
    yield (url, predict.newest_version(config.serving_dir, config.model_name),
           config.model_name, config.videos_dir)


def test_rest_request_body_gets_the_savedmodels_probabilities(served, capsys):
  url, model_dir, name, videos_dir = served
  bodies = []
  for video in ('Violence/V_0001.mp4', 'NonViolence/NV_0000.mp4'):
    path = os.path.join(videos_dir, video)
    assert cli.main(['predict', '--rest-request', path, '--model-dir', model_dir]) == 0
    bodies.append(json.loads(capsys.readouterr().out))
  instances = [b['instances'][0] for b in bodies]
  records = [base64.b64decode(i['examples']['b64']) for i in instances]
  direct = tf.saved_model.load(model_dir).signatures['serving_default'](
      examples=tf.constant(records))['probabilities'].numpy()  # [2, 1]
  assert direct[0, 0] - direct[1, 0] > 0.5, direct  # a violent and a non-violent clip
  status, reply = http(f'{url}/v1/models/{name}:predict', bodies[0])
  assert status == 200, reply
  np.testing.assert_allclose(reply['predictions'], direct[:1], rtol=1e-5, atol=1e-6)
  # Columnar form, with the version in the path: {"outputs": …} holds the same numbers, in
  # the order sent.
  version = os.path.basename(model_dir)
  status, columnar = http(f'{url}/v1/models/{name}/versions/{version}:predict',
                          {'inputs': {'examples': [i['examples'] for i in instances[::-1]]}})
  assert status == 200, columnar
  np.testing.assert_allclose(columnar['outputs'], direct[::-1], rtol=1e-5, atol=1e-6)


def test_status_endpoint_reports_the_version(served):
  url, model_dir, name, _ = served
  version = os.path.basename(model_dir)
  expected = {'model_version_status': [{'version': version, 'state': 'AVAILABLE',
                                        'status': {'error_code': 'OK', 'error_message': ''}}]}
  assert http(f'{url}/v1/models/{name}') == (200, expected)
  assert http(f'{url}/v1/models/{name}/versions/{version}') == (200, expected)
  status, metadata = http(f'{url}/v1/models/{name}/metadata')
  signature = metadata['metadata']['signature_def']['signature_def']['serving_default']
  assert status == 200 and signature['inputs']['examples']['dtype'] == 'string'
  for missing in (f'{url}/v1/models/nope', f'{url}/v1/models/{name}/versions/999'):
    status, reply = http(missing)
    assert status == 404 and 'Servable not found' in reply['error']


@pytest.mark.parametrize('body, words', [
    (b'{"instances": [', 'JSON Parse error'),
    ([1, 2], 'JSON object'),
    ({'signature_name': 'serving_default'}, "Missing 'inputs' or 'instances'"),
    ({'instances': [], 'inputs': []}, 'not both'),
    ({'instances': []}, 'non-empty'),
    ({'instances': [{'examples': {'b64': '***'}}]}, 'not valid base64'),
    ({'instances': [{'clips': {'b64': ''}}]}, 'unknown input'),
    ({'instances': [{'b64': 'AAAA'}], 'signature_name': 'nope'}, 'not found in signature def'),
    ({'instances': [{'b64': base64.b64encode(b'not a tf.Example').decode()}]},
     'Could not parse example input'),
    ({'inputs': {'examples': [[{'b64': 'AAAA'}]]}}, 'does not match'),
    ({'instances': [{'examples': 3.5}]}, 'expected strings'),
    (b'{"instances": ' + b'[' * 50000 + b']' * 50000 + b'}', 'nested too deeply'),
])
def test_malformed_bodies_get_400_with_a_message(served, body, words):
  url, _, name, _ = served
  status, reply = http(f'{url}/v1/models/{name}:predict', body)
  assert status == 400 and isinstance(reply['error'], str) and reply['error'], reply
  assert words in reply['error'], reply


def test_bounded_request_size(served):
  url, _, name, _ = served
  big = {'instances': [{'b64': base64.b64encode(b'x' * (300 << 10)).decode()}]}
  status, reply = http(f'{url}/v1/models/{name}:predict', big)
  assert status == 413 and 'limit' in reply['error']


def test_path_parsing():
  for path, ok in (('m', True), ('m/versions/3', True), ('m:predict', True),
                   ('m/versions/3:predict', True), ('m/metadata', True), ('m/x/y', False),
                   ('', False)):
    assert bool(rest._PATH.match(path)) == ok, path  # pylint: disable=protected-access


def test_serve_without_a_model_is_a_clear_error(tmp_path, capsys):
  assert cli.main(['serve', '--model-dir', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert err.startswith('vivit-tfx serve: error: ') and 'numbered SavedModel' in err, err


def test_a_newly_pushed_version_is_served(first_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  config, _ = first_run
  pushed = predict.newest_version(config.serving_dir, config.model_name)
  shutil.copytree(pushed, tmp_path / '7')
  model = rest.ModelServer(str(tmp_path), 'm')
  assert model.servable.version == 7 and not model.refresh()
  shutil.copytree(pushed, tmp_path / '12')
  assert model.refresh() and model.handle('GET', 'm/versions/12')['model_version_status'][0][
      'version'] == '12'
