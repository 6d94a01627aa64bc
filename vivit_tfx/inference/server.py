"""`vivit-tfx serve`: one local server for the pushed model (Starlette on uvicorn).

* `/v1/models/…`: TF Serving's REST API (`vivit_tfx.inference.rest`), so a client written for
  TF Serving works unchanged against a machine without Docker or the TF Serving binary.
* `/`: the review page (`vivit_tfx.inference.review`): upload a video or pick one from a
  configured folder; label, timeline, segment thumbnails and attention overlay; the video
  player, and the verdicts reviewers record (`/review/<id>/verdicts`).
* `/videos/<path>`: a video of `--videos-dir` (only files really inside it).

Who gets in is `vivit_tfx.inference.access`: with tokens, every route but loopback `/v1/models`
needs one; beyond loopback the server does not start without them. With `--tls-cert` and
`--tls-key` it speaks HTTPS (uvicorn's own TLS), so tokens and footage do not cross the network
in clear; a TLS proxy in front is the other way.

Request bodies are read with a size cap; everything the server writes goes under its work folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import ssl
import sys
import threading
import time
from typing import Optional

from vivit_tfx import extras
from vivit_tfx.inference import access, rest, review

with extras.needed('serve'):  # the web stack is the [serve] extra, not in the Trainer/Beam image
  from starlette.applications import Starlette
  from starlette.middleware import Middleware
  from starlette.concurrency import run_in_threadpool
  from starlette.requests import ClientDisconnect, Request
  from starlette.responses import (FileResponse, HTMLResponse, JSONResponse, RedirectResponse,
                                    Response)
  from starlette.routing import Route
  import uvicorn


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  model_dir: str
  model_name: str = 'vivit_violence'
  host: str = '127.0.0.1'
  port: int = 8501  # TF Serving's REST port
  work_dir: str = 'output/serve'
  videos_dir: str = ''  # review page: videos offered for picking ('' = upload only)
  max_request_bytes: int = 64 << 20  # REST bodies
  max_upload_bytes: int = 512 << 20  # review uploads
  threshold: float = 0.5  # review page: windows at or above it are flagged
  poll_s: float = 30.0  # look for a newly pushed version this often (0: never)
  token_file: str = ''  # name:token lines (`access.load_tokens`; also VIVIT_TFX_SERVE_TOKENS)
  tls_cert: str = ''  # PEM certificate (chain): serve HTTPS
  tls_key: str = ''  # its PEM private key

  @property
  def url(self) -> str:
    return f'{"https" if self.tls_cert else "http"}://{self.host}:{self.port}'

  def tls(self) -> dict:
    """uvicorn's TLS settings; ValueError (one line) for a pair that cannot serve HTTPS."""
    if bool(self.tls_cert) != bool(self.tls_key):
      raise ValueError('--tls-cert and --tls-key go together: a PEM certificate and its key')
    if not self.tls_cert:
      return {}
    try:  # as uvicorn will load them, before the model is loaded
      ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(self.tls_cert,
                                                                         self.tls_key)
    except OSError as e:  # ssl.SSLError included
      raise ValueError(f'--tls-cert {self.tls_cert} / --tls-key {self.tls_key}: cannot serve '
                       f'HTTPS with them ({e.strerror or e})') from None
    return {'ssl_certfile': self.tls_cert, 'ssl_keyfile': self.tls_key}


class BodyTooLarge(Exception):
  pass


async def _body(request: Request, limit: int, sink=None) -> bytes:
  """The request body, refused past `limit` bytes; streamed into `sink` (a file) if given."""
  declared = request.headers.get('content-length', '')
  if declared.isdigit() and int(declared) > limit:
    raise BodyTooLarge(f'request body of {int(declared)} bytes exceeds the limit of {limit}')
  chunks, size = [], 0
  async for chunk in request.stream():
    size += len(chunk)
    if size > limit:
      raise BodyTooLarge(f'request body exceeds the limit of {limit} bytes')
    if sink is None:
      chunks.append(chunk)
    else:
      sink.write(chunk)
  return b''.join(chunks)


def _error(message: str, status: int = 400) -> JSONResponse:
  return JSONResponse({'error': message}, status_code=status)


class TokenGate:
  """ASGI middleware: a request the gate needs a token for gets a bare 401 without the right
  one; `?token=` on a GET logs a browser in (a cookie, then a redirect without the token;
  `secure`: the cookie is sent over HTTPS only). The token's name is `scope['reviewer']` (''
  where no token is needed)."""

  def __init__(self, app, gate: access.Gate, secure: bool = False):
    self.app, self.gate, self.secure = app, gate, secure

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    scope['reviewer'] = ''
    if not self.gate.needs_token(scope['path']):
      return await self.app(scope, receive, send)
    request = Request(scope)
    token, query = access.login_query(scope.get('query_string', b'').decode('latin-1'))
    name = self.gate.name_of(token if token is not None else
                             self.gate.presented(request.headers))
    if name is None:
      return await Response(status_code=401, headers={'WWW-Authenticate': 'Bearer'})(
          scope, receive, send)
    if token is not None and request.method == 'GET':
      path = '/' + scope['path'].lstrip('/')  # never //host: a redirect stays on this server
      response = RedirectResponse(path + (f'?{query}' if query else ''), status_code=303)
      response.set_cookie(access.COOKIE, token, httponly=True, samesite='strict',
                          secure=self.secure)
      return await response(scope, receive, send)
    scope['reviewer'] = name
    return await self.app(scope, receive, send)


def create_app(config: ServerConfig, model: Optional[rest.ModelServer] = None,
               reviewer: Optional[review.Reviewer] = None,
               gate: Optional[access.Gate] = None) -> Starlette:
  """The ASGI app; `model`, `reviewer` and `gate` are built from `config` unless given."""
  gate = gate or access.Gate(access.load_tokens(config.token_file), config.host)
  model = model or rest.ModelServer(config.model_dir, config.model_name)
  reviewer = reviewer or review.Reviewer(model.servable.path, config.work_dir, config.videos_dir,
                                         threshold=config.threshold)

  async def models(request: Request) -> Response:
    try:
      body = await _body(request, config.max_request_bytes) if request.method == 'POST' else b''
      reply = await run_in_threadpool(model.handle, request.method,
                                      request.path_params['path'], body)
    except BodyTooLarge as e:
      return _error(str(e), 413)
    except rest.RestError as e:
      return _error(str(e), e.status)
    return JSONResponse(reply)

  async def page(request: Request) -> Response:
    del request
    return HTMLResponse(review.index_page(model.servable, reviewer.library()))

  async def reviewed(job: review.Job, path: str, upload: Optional[Request] = None) -> Response:
    """Receives the upload (if any) into the job folder, reviews; a failed job is removed."""
    try:
      if upload is not None:
        with open(job.upload_path, 'wb') as sink:
          await _body(upload, config.max_upload_bytes, sink)
      await run_in_threadpool(reviewer.review, job, path)
    except BodyTooLarge as e:
      reviewer.discard(job)
      return _error(str(e), 413)
    except ClientDisconnect:
      reviewer.discard(job)
      return _error('the upload was interrupted', 400)
    except review.NotAVideo as e:
      reviewer.discard(job)
      return _error(str(e), 400)
    except Exception as e:  # pylint: disable=broad-except
      reviewer.discard(job)
      return _error(f'{job.name}: the review failed ({rest.first_line(e)})', 500)
    return JSONResponse({'job': job.id, 'url': f'/review/{job.id}'})

  async def upload(request: Request) -> Response:
    job = reviewer.new_job(request.query_params.get('name', 'upload'))
    return await reviewed(job, job.upload_path, request)

  async def pick(request: Request) -> Response:
    try:
      name = json.loads(await _body(request, 4096)).get('name', '')
      path = reviewer.library_path(name)
    except (BodyTooLarge, ValueError, AttributeError) as e:
      return _error(str(e) or 'expected {"name": "<video in the library>"}', 400)
    return await reviewed(reviewer.new_job(name), path)

  async def result(request: Request) -> Response:
    try:
      job_id = request.path_params['job']
      return HTMLResponse(review.result_page(reviewer.result(job_id),
                                             reviewer.verdicts.of_job(job_id)))
    except KeyError:
      return HTMLResponse('<p>No such review.</p>', status_code=404)

  async def verdict(request: Request) -> Response:
    try:
      body = json.loads(await _body(request, 4096))
      record = await run_in_threadpool(reviewer.record, request.path_params['job'], body,
                                       request.scope.get('reviewer', ''))
    except KeyError:
      return _error('no such review', 404)
    except (BodyTooLarge, ValueError) as e:
      return _error(str(e), 400)
    except OSError as e:
      return _error(f'the verdict was not kept ({e.strerror or e})', 500)
    return JSONResponse(record)

  async def video(request: Request) -> Response:
    try:
      return FileResponse(access.inside(config.videos_dir, request.path_params['path']))
    except KeyError:
      return Response('not found', status_code=404)

  async def files(request: Request) -> Response:
    try:
      return FileResponse(reviewer.file(request.path_params['job'], request.path_params['name']))
    except KeyError:
      return Response('not found', status_code=404)

  def poll(stop: threading.Event) -> None:
    while not stop.wait(config.poll_s):
      try:
        if model.refresh():
          reviewer.model_dir = model.servable.path
          print(f'serve: now serving version {model.servable.version} '
                f'({model.servable.path})', flush=True)
      except Exception as e:  # pylint: disable=broad-except  # keep serving the loaded one
        print(f'serve: could not load a new version: {rest.first_line(e)}', file=sys.stderr,
              flush=True)

  @contextlib.asynccontextmanager
  async def lifespan(app):
    del app
    stop = threading.Event()
    if config.poll_s > 0:
      threading.Thread(target=poll, args=(stop,), daemon=True, name='version poll').start()
    yield
    stop.set()

  return Starlette(lifespan=lifespan, middleware=[
      Middleware(TokenGate, gate=gate, secure=bool(config.tls_cert))], routes=[
      Route('/v1/models/{path:path}', models, methods=['GET', 'POST']),
      Route('/', page),
      Route('/review/upload', upload, methods=['POST']),
      Route('/review/library', pick, methods=['POST']),
      Route('/review/{job}', result),
      Route('/review/{job}/verdicts', verdict, methods=['POST']),
      Route('/videos/{path:path}', video),
      Route('/files/{job}/{name}', files),
  ])


def serve(config: ServerConfig) -> None:
  """Loads the model, prints where to find it and runs until Ctrl-C."""
  extras.require('serve')  # with matplotlib: the review page draws
  gate = access.Gate(access.load_tokens(config.token_file), config.host)  # before the model
  tls = config.tls()
  model = rest.ModelServer(config.model_dir, config.model_name)
  app = create_app(config, model, gate=gate)
  url = config.url
  print(f'serve: {model.servable.path} as {config.model_name} version {model.servable.version}\n'
        f'  review page: {url}/\n'
        f'  REST: {url}/v1/models/{config.model_name}[:predict]\n'
        f'  work folder: {os.path.abspath(config.work_dir)}\n'
        f'  access: {_access_line(gate)}', flush=True)
  if not tls and not access.is_loopback(config.host):
    print('serve: warning: plain HTTP beyond loopback: tokens and footage cross the network in '
          'clear (--tls-cert/--tls-key, or a TLS proxy in front)', file=sys.stderr, flush=True)
  uvicorn.run(app, host=config.host, port=config.port, log_level='warning', **tls)


def _access_line(gate: access.Gate) -> str:
  if not gate.enabled:
    return 'open (loopback only, no tokens)'
  return (f'{len(gate.tokens)} token(s) ({", ".join(sorted(gate.tokens))}); open to '
          f'{"loopback REST only" if gate.open_rest else "no one without a token"}')


class BackgroundServer:
  """The server on a background thread (tests, benchmarks): `with BackgroundServer(c) as url:`.

  `bind`: listen there instead of `config.host` (tests of a server configured for another host).
  """

  def __init__(self, config: ServerConfig, model: Optional[rest.ModelServer] = None,
               reviewer: Optional[review.Reviewer] = None, bind: str = ''):
    self.app = create_app(config, model, reviewer)
    host = bind or config.host
    self._server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=config.port,
                                                 log_level='warning', **config.tls()))
    self.url = dataclasses.replace(config, host=host).url
    self._thread = None

  def __enter__(self) -> str:
    self._thread = threading.Thread(target=self._server.run, daemon=True)
    self._thread.start()
    deadline = time.monotonic() + 30
    while not self._server.started:
      if not self._thread.is_alive() or time.monotonic() > deadline:
        raise OSError(f'the server did not start on {self.url}')
      time.sleep(0.05)
    return self.url

  def __exit__(self, *exc) -> None:
    self._server.should_exit = True
    self._thread.join(timeout=10)
