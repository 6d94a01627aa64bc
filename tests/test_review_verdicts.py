"""Reviews that are kept, only reviewers get in, verdicts into training (`serve`, issue 32).

A stub stands in for the model (no TensorFlow run): the gate, the verdict file, the video
endpoint and the export do not depend on it. The review itself is a hand-written result.json.
"""
import csv
import datetime
import http.client
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys

from cryptography import x509  # google-auth's dependency, so TensorFlow's
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
import pytest

from vivit_tfx import cli
from vivit_tfx.data import ingest, synthetic, video_reader
from vivit_tfx.inference import access, review, reviews_export, server, verdicts
from tests.test_serve import free_port

ALICE, BOB = 'alice-token-0123456789abcdef', 'bob-token-0123456789abcdef'
JOB = '0123456789ab'
CLASSES = ['NonViolence', 'Violence']


class StubModel:
  """What `create_app` asks of `rest.ModelServer`."""

  class servable:  # pylint: disable=invalid-name
    name, version, path = 'm', 1, '/nowhere/1'

  @staticmethod
  def handle(method, path, body):
    del method, body
    return {'predictions': [[0.25]]} if path.endswith(':predict') else {'status': path}

  @staticmethod
  def refresh():
    return False


def fake_review(work: str, source: str, library_name: str) -> dict:
  """A finished review of `source` (a library video) as `Reviewer.review` writes it."""
  folder = os.path.join(work, 'jobs', JOB)
  os.makedirs(folder)
  with open(os.path.join(folder, 'segment-001.jpg'), 'wb') as f:
    f.write(b'\xff\xd8 not really a jpeg')
  result = {'job': JOB, 'video': os.path.basename(source), 'label': 'Violence',
            'probability': 0.9, 'positive_class': 'Violence', 'positive_probability': 0.9,
            'duration_s': 8.0, 'threshold': 0.5, 'timeline': 'x.png', 'attention': {'error': '-'},
            'segments': [{'start_s': 0.0, 'end_s': 2.0, 'peak_score': 0.8,
                          'thumbnail': 'segment-001.jpg'},
                         {'start_s': 4.0, 'end_s': 6.0, 'peak_score': 0.9, 'thumbnail': None}],
            'source': {'library': library_name}, 'source_path': source, 'model': '/m/1',
            'classes': CLASSES}
  with open(os.path.join(folder, review.RESULT_FILE), 'w') as f:
    json.dump(result, f)
  return result


@pytest.fixture(scope='module')
def site(tmp_path_factory):
  """(host, port, work folder, videos folder, outside folder) of a token-guarded server on
  loopback: a library with one video, a symlink and a symlinked folder leading out of it."""
  root = tmp_path_factory.mktemp('guarded')
  videos, outside, work = root / 'videos', root / 'outside', str(root / 'work')
  (videos / 'Violence').mkdir(parents=True)
  outside.mkdir()
  synthetic.long_video(str(videos / 'Violence' / 'fight.mp4'), [0, 1, 0, 1], segment_s=2.0)
  (outside / 'secret.mp4').write_bytes(b'secret footage')
  os.symlink(outside / 'secret.mp4', videos / 'link.mp4')
  os.symlink(outside, videos / 'linkdir')
  tokens = root / 'tokens'
  tokens.write_text(f'# reviewers\nalice:{ALICE}\n\nbob:{BOB}\n')
  fake_review(work, os.path.realpath(videos / 'Violence' / 'fight.mp4'), 'Violence/fight.mp4')
  config = server.ServerConfig(model_dir='/nowhere', model_name='m', port=free_port(),
                               work_dir=work, videos_dir=str(videos), token_file=str(tokens),
                               poll_s=0)
  reviewer = review.Reviewer('/nowhere/1', work, str(videos))
  with server.BackgroundServer(config, StubModel(), reviewer):
    yield '127.0.0.1', config.port, work, str(videos), str(outside)


def call(site_, method, path, body=None, token=None, cookie=None):
  """(status, headers, body bytes) of one request; redirects are not followed."""
  headers = {}
  if token:
    headers['Authorization'] = f'Bearer {token}'
  if cookie:
    headers['Cookie'] = cookie
  if body is not None and not isinstance(body, bytes):
    body = json.dumps(body).encode()
  connection = http.client.HTTPConnection(site_[0], site_[1], timeout=30)
  try:
    connection.request(method, path, body=body, headers=headers)
    reply = connection.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()
  finally:
    connection.close()


ROUTES = [('GET', '/', None, 200), ('GET', f'/review/{JOB}', None, 200),
          ('GET', f'/files/{JOB}/segment-001.jpg', None, 200),
          ('GET', '/videos/Violence/fight.mp4', None, 200),
          ('POST', f'/review/{JOB}/verdicts', {'segment': 2, 'verdict': 'unsure'}, 200),
          ('POST', '/review/library', {'name': 'not/in/the/library.mp4'}, 400),
          ('POST', '/review/upload?name=notes.txt', b'hello', 400),
          ('GET', '/v1/models/m/metadata', None, 200)]  # the REST API, as any route


@pytest.mark.parametrize('method, path, body, allowed', ROUTES)
def test_without_or_with_a_wrong_token_401_with_the_right_one_in(site, method, path, body,
                                                                 allowed):
  for token in (None, 'x' * 24, ALICE[:-1] + 'g'):
    status, _, reply = call(site, method, path, body, token=token)
    if path.startswith('/v1/models/'):  # loopback: TF Serving's API stays open
      assert status == 200, (path, token)
      continue
    assert (status, reply) == (401, b''), (path, token, status, reply)  # no detail
  assert call(site, method, path, body, cookie=f'{access.COOKIE}={ALICE[:-1]}')[0] == (
      200 if path.startswith('/v1/') else 401)
  status, _, reply = call(site, method, path, body, token=BOB)
  assert status == allowed, (path, status, reply)


def test_loopback_predict_is_open_and_keeps_tf_servings_contract(site):
  status, _, reply = call(site, 'POST', '/v1/models/m:predict', {'instances': [{'b64': ''}]})
  assert status == 200 and json.loads(reply) == {'predictions': [[0.25]]}


def test_a_browser_logs_in_once_with_a_query_token_then_holds_a_cookie(site):
  status, headers, _ = call(site, 'GET', f'/review/{JOB}?token={ALICE}&x=1')
  assert status == 303 and headers['location'] == f'/review/{JOB}?x=1'  # token out of the URL
  cookie = headers['set-cookie']
  assert cookie.startswith(f'{access.COOKIE}={ALICE};') and 'httponly' in cookie.lower()
  assert 'samesite=strict' in cookie.lower()
  assert call(site, 'GET', '/', cookie=cookie.split(';')[0])[0] == 200
  assert call(site, 'GET', f'/?token={ALICE[:-1]}')[0] == 401
  status, headers, _ = call(site, 'GET', f'//evil.example/?token={ALICE}')
  assert status == 303 and headers['location'] == '/evil.example/'  # stays on this server


def test_beyond_loopback_no_start_without_tokens_and_rest_needs_one(site, tmp_path, capsys,
                                                                   monkeypatch):
  monkeypatch.delenv(access.ENV_VAR, raising=False)
  # The refusal comes before the model is loaded (there is none in tmp_path).
  assert cli.main(['serve', '--host', '0.0.0.0', '--model-dir', str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert 'beyond loopback' in err and '--token-file' in err and 'SavedModel' not in err, err
  bad = tmp_path / 'tokens'
  bad.write_text('carol:short\n')
  assert cli.main(['serve', '--token-file', str(bad), '--model-dir', str(tmp_path)]) == 1
  assert f'{bad} line 1' in capsys.readouterr().err
  monkeypatch.setenv(access.ENV_VAR, f'dave:{ALICE}')
  assert access.Gate(access.load_tokens(), '0.0.0.0').name_of(ALICE) == 'dave'
  # Configured for every interface (bound here to loopback): :predict needs the token too.
  config = server.ServerConfig(model_dir='/nowhere', model_name='m', host='0.0.0.0',
                               port=free_port(), work_dir=str(tmp_path / 'w'), poll_s=0)
  with server.BackgroundServer(config, StubModel(), bind='127.0.0.1'):
    wide = ('127.0.0.1', config.port)
    assert call(wide, 'POST', '/v1/models/m:predict', {'instances': [1]})[0] == 401
    assert call(wide, 'POST', '/v1/models/m:predict', {'instances': [1]}, token=ALICE)[0] == 200


@pytest.mark.parametrize('path', ['/videos/../outside/secret.mp4', '/videos/%2e%2e/secret.mp4',
                                  '/videos/link.mp4', '/videos/linkdir/secret.mp4',
                                  '/videos//etc/passwd', '/videos/Violence', '/videos/'])
def test_the_video_endpoint_serves_only_files_inside_videos_dir(site, path):
  status, _, reply = call(site, 'GET', path, token=ALICE)
  assert status == 404 and b'secret' not in reply, (path, status)


def test_library_lists_and_picks_no_symlink_out(site):
  _, _, work, videos, _ = site
  reviewer = review.Reviewer('/nowhere/1', work, videos)
  assert reviewer.library() == ['Violence/fight.mp4']
  with pytest.raises(ValueError, match='not a video of the library'):
    reviewer.library_path('link.mp4')
  status, headers, body = call(site, 'GET', '/videos/Violence/fight.mp4', token=ALICE)
  with open(os.path.join(videos, 'Violence', 'fight.mp4'), 'rb') as f:
    assert status == 200 and body == f.read() and headers.get('accept-ranges') == 'bytes'


def test_verdicts_are_kept_with_who_and_when_and_shown_after_a_restart(site, capfd):
  host, port, work, videos, _ = site
  status, _, reply = call(site, 'POST', f'/review/{JOB}/verdicts',
                          {'segment': 1, 'verdict': 'not violent'}, token=ALICE)
  kept = json.loads(reply)
  assert status == 200 and kept['reviewer'] == 'alice' and kept['start_s'] == 0.0
  assert kept['time'].endswith('+00:00') and kept['source'].endswith('fight.mp4')
  status, _, reply = call(site, 'POST', f'/review/{JOB}/verdicts',
                          {'missed': {'start_s': 2.5, 'end_s': 3.5, 'class': 'Violence'}},
                          token=BOB)
  assert status == 200 and json.loads(reply)['reviewer'] == 'bob'
  for bad in ({'segment': 3, 'verdict': 'violent'}, {'segment': 1, 'verdict': 'maybe'},
              {'missed': {'start_s': 5, 'end_s': 4, 'class': 'Violence'}},
              {'missed': {'start_s': 1, 'end_s': 2, 'class': 'Dance'}}, [1]):
    status, _, reply = call(site, 'POST', f'/review/{JOB}/verdicts', bad, token=ALICE)
    assert status == 400 and json.loads(reply)['error'], bad
  # A write cut short by a killed process, then a restart: the earlier lines are all there.
  path = os.path.join(work, verdicts.FILE)
  with open(path, 'ab') as f:
    f.write(b'{"time": "2026-12-06T04:0')
  capfd.readouterr()
  again = review.Reviewer('/nowhere/1', work, videos)
  err = capfd.readouterr().err
  assert err.count('\n') == 1 and 'line' in err and 'skipped' in err, err
  shown = again.verdicts.of_job(JOB)
  assert shown['segments'][1]['verdict'] == 'not violent' and len(shown['missed']) == 1
  page = review.result_page(again.result(JOB), shown)
  assert 'not violent (alice)' in page and '2.5–3.5 s: Violence (bob)' in page
  assert '<video id="player"' in page and 'src="/videos/Violence/fight.mp4"' in page
  again.record(JOB, {'segment': 1, 'verdict': 'violent'}, 'alice')  # after the torn line
  records, warnings = verdicts.read(path)
  assert [r['verdict'] for r in records][-2:] == ['missed', 'violent'] and len(warnings) == 1
  latest = {r['segment']: r['verdict'] for r in verdicts.latest(records) if r['segment']}
  assert latest[1] == 'violent'  # the later verdict on a segment counts


_WRITER = """
import sys
from vivit_tfx.inference import verdicts
log = verdicts.VerdictLog(sys.argv[1])
for n in range(100000):
  log.append({'kind': 'segment', 'job': 'j', 'segment': n, 'verdict': 'unsure', 'pad': 'x' * 300})
  print(n, flush=True)
"""


def test_a_verdict_survives_a_killed_writer(tmp_path):
  """SIGKILL while verdicts are being written: every acknowledged one is on disk, in order."""
  path = str(tmp_path / verdicts.FILE)
  writer = subprocess.Popen([sys.executable, '-c', _WRITER, path], stdout=subprocess.PIPE,
                            text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  acknowledged = -1
  while acknowledged < 30:
    acknowledged = int(writer.stdout.readline())
  writer.send_signal(signal.SIGKILL)
  writer.wait(timeout=30)
  records, _ = verdicts.read(path)
  numbers = [r['segment'] for r in records]
  assert numbers == list(range(len(numbers))) and len(numbers) > acknowledged


def test_exported_reviews_ingest_with_their_groups(site, tmp_path, capsys):
  _, _, work, videos, _ = site
  # The original data: the reviewed video plus two more, RLVS layout.
  original = tmp_path / 'original'
  (original / 'NonViolence').mkdir(parents=True)
  (original / 'Violence').mkdir()
  source = original / 'Violence' / 'fight.mp4'
  synthetic.long_video(str(source), [0, 1, 0, 1], segment_s=2.0)
  synthetic.long_video(str(original / 'Violence' / 'other.mp4'), [1], segment_s=2.0, seed=3)
  synthetic.long_video(str(original / 'NonViolence' / 'calm.mp4'), [0], segment_s=2.0, seed=4)
  log = verdicts.VerdictLog(str(tmp_path / verdicts.FILE))
  result = fake_review(str(tmp_path / 'w'), os.path.realpath(source), 'Violence/fight.mp4')
  for body in ({'segment': 1, 'verdict': 'not violent'},    # a false alarm
               {'segment': 2, 'verdict': 'violent'},        # confirmed, then changed:
               {'segment': 2, 'verdict': 'unsure'},         # the latest counts: not exported
               {'missed': {'start_s': 6.0, 'end_s': 8.0, 'class': 'Violence'}}):
    log.append(verdicts.make(result, body, 'alice'))
  out = tmp_path / 'reviewed'
  assert cli.main(['reviews', 'export', '--work-dir', str(tmp_path), '--out-dir', str(out),
                   '--original', str(original)]) == 0
  text = capsys.readouterr().out
  assert ('1 false alarm(s) as hard negatives, 1 missed stretch(es), 3 original video(s); '
          '1 unsure not exported') in text, text
  with open(out / reviews_export.CSV_NAME, newline='') as f:
    rows = list(csv.DictReader(f))
  cut = {r['path']: r for r in rows if not os.path.isabs(r['path'])}
  assert sorted(cut) == [f'fight-{JOB}-m01.mp4', f'fight-{JOB}-s01.mp4']
  negative = cut[f'fight-{JOB}-s01.mp4']
  assert (negative['label'], negative['verdict'], negative['start_s']) == (
      'NonViolence', 'not violent', '0.0')
  assert video_reader.probe(str(out / f'fight-{JOB}-s01.mp4')).num_frames == 30  # 2 s at 15 fps
  # The stretches take their original video's split; held-out.csv lists those in test.
  assert {r['split'] for r in rows if r['group'] == os.path.realpath(source)} in (
      {'train'}, {'eval'}, {'test'})
  with open(out / reviews_export.HELD_OUT_NAME, newline='') as f:
    assert {r['path'] for r in csv.DictReader(f)} == {p for p, r in cut.items()
                                                       if r['split'] == 'test'}
  # Ingest reads the file in its csv layout; the stretches keep their source video as group,
  # the same group as the original video, so they all land in one split.
  clips = tmp_path / 'clips'
  ingest.ingest(str(out / reviews_export.CSV_NAME), str(clips),
                clip=ingest.ClipConfig(num_frames=4, frame_size=(32, 32)), progress=False)
  manifest = [json.loads(l) for l in open(clips / ingest.MANIFEST)]
  ok = {os.path.basename(m['path']): m for m in manifest if m['status'] == 'ok'}
  assert set(ok) == {'fight.mp4', 'other.mp4', 'calm.mp4', f'fight-{JOB}-m01.mp4',
                     f'fight-{JOB}-s01.mp4'}, manifest
  group = os.path.realpath(source)
  family = [ok[n] for n in ('fight.mp4', f'fight-{JOB}-m01.mp4', f'fight-{JOB}-s01.mp4')]
  assert {m['group'] for m in family} == {group} and len({m['split'] for m in family}) == 1
  assert ok[f'fight-{JOB}-s01.mp4']['class'] == 'NonViolence'
  # A rerun refreshes its own files; a file of the user's in the way stops it.
  assert cli.main(['reviews', 'export', '--work-dir', str(tmp_path), '--out-dir', str(out)]) == 0
  capsys.readouterr()
  mine = tmp_path / 'mine'
  mine.mkdir()
  (mine / reviews_export.CSV_NAME).write_text('my own notes')
  assert cli.main(['reviews', 'export', '--work-dir', str(tmp_path), '--out-dir', str(mine)]) == 1
  assert 'was not written by vivit-tfx' in capsys.readouterr().err
  assert (mine / reviews_export.CSV_NAME).read_text() == 'my own notes'


def self_signed(folder) -> tuple:
  """(certificate, key) PEM files for 127.0.0.1, made here with `cryptography`."""
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, '127.0.0.1')])
  now = datetime.datetime.now(datetime.timezone.utc)
  cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
              ipaddress.ip_address('127.0.0.1'))]), critical=False)
          .sign(key, hashes.SHA256()))
  cert_path, key_path = folder / 'cert.pem', folder / 'key.pem'
  cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
  key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
  return str(cert_path), str(key_path)


def test_tls_serves_https_with_a_secure_cookie(site, tmp_path):
  cert, key = self_signed(tmp_path)
  config = server.ServerConfig(model_dir='/nowhere', model_name='m', port=free_port(),
                               work_dir=str(tmp_path / 'w'), videos_dir=site[3], poll_s=0,
                               tls_cert=cert,
                               tls_key=key, token_file=str(tmp_path / 'tokens'))
  (tmp_path / 'tokens').write_text(f'alice:{ALICE}\n')
  trusted = ssl.create_default_context(cafile=cert)
  with server.BackgroundServer(config, StubModel()) as url:
    assert url == f'https://127.0.0.1:{config.port}'
    def get(path, context=trusted, token=None):
      connection = http.client.HTTPSConnection('127.0.0.1', config.port, timeout=30,
                                               context=context)
      try:
        connection.request('GET', path, headers={'Authorization': f'Bearer {token}'}
                           if token else {})
        reply = connection.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
      finally:
        connection.close()
    assert get('/')[0] == 401 and get('/', token=ALICE)[0] == 200
    status, headers, _ = get(f'/?token={ALICE}')
    assert status == 303 and 'secure' in headers['set-cookie'].lower()
    with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
      get('/', context=ssl.create_default_context())
    with pytest.raises(ConnectionError):  # plain HTTP to the HTTPS port: nothing served
      call(('127.0.0.1', config.port), 'GET', '/v1/models/m', token=ALICE)


def test_tls_a_bad_certificate_and_key_pair_stops_serve_before_the_model(tmp_path, capsys):
  cert, _ = self_signed(tmp_path)
  for args, says in ((['--tls-cert', cert], 'go together'),
                     (['--tls-cert', cert, '--tls-key', cert], 'cannot serve HTTPS')):
    assert cli.main(['serve', '--model-dir', str(tmp_path), *args]) == 1
    err = capsys.readouterr().err
    assert says in err and err.count('\n') == 1 and 'SavedModel' not in err, err
