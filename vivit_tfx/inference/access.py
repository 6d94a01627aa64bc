"""Who may use `vivit-tfx serve`: access tokens, and the one folder videos are served from.

Tokens are `name:token` lines, from `--token-file` and/or the `VIVIT_TFX_SERVE_TOKENS`
environment variable (entries separated by whitespace or commas). A request carries its token
as `Authorization: Bearer <token>`, or as the cookie a browser gets after opening any page
with `?token=<token>` once. Tokens are compared in constant time (`hmac.compare_digest`,
against every known token); a wrong or missing one gets a bare 401. The token's *name* (never
the token) is what verdicts record as their reviewer.

When the server listens beyond loopback it refuses to start without a token. TF Serving's REST
API (`/v1/models/…`) stays open when it listens on loopback only (as TF Serving's own port);
beyond loopback it needs the Bearer header too.
"""
from __future__ import annotations

import hmac
import http.cookies
import ipaddress
import os
import re
import urllib.parse
from typing import Dict, Iterable, List, Optional, Tuple

ENV_VAR = 'VIVIT_TFX_SERVE_TOKENS'
COOKIE = 'vivit_tfx_token'
MIN_TOKEN_CHARS = 16
_NAME = re.compile(r'^[A-Za-z0-9_.@-]{1,64}$')
_TOKEN = re.compile(r'^[A-Za-z0-9_.~+/=-]+$')  # what a header and a cookie carry unquoted


class AccessError(ValueError):
  """A token file or setting that cannot be used; the message is one line."""


def is_loopback(host: str) -> bool:
  """True for localhost, 127.0.0.0/8 and ::1; False for 0.0.0.0, ::, names and other IPs."""
  if host.strip('[]').lower() == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host.strip('[]')).is_loopback
  except ValueError:
    return False


def _parse(entries: Iterable[Tuple[str, str]]) -> Dict[str, str]:
  """{name: token} from (where, 'name:token') pairs; raises AccessError naming `where`."""
  tokens: Dict[str, str] = {}
  for where, entry in entries:
    name, sep, token = entry.partition(':')
    name, token = name.strip(), token.strip()
    if not sep or not _NAME.match(name):
      raise AccessError(f'{where}: expected name:token (a name of letters, digits, _ . @ -)')
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
      raise AccessError(f'{where}: the token of {name!r} must be at least {MIN_TOKEN_CHARS} '
                        'characters of letters, digits and _ . ~ + / = - (e.g. python3 -c '
                        '"import secrets; print(secrets.token_urlsafe(24))")')
    if name in tokens or token in tokens.values():
      raise AccessError(f'{where}: {name!r} or its token is listed twice')
    tokens[name] = token
  return tokens


def load_tokens(token_file: str = '', environ=os.environ) -> Dict[str, str]:
  """{name: token} from `token_file` (blank lines and # comments skipped) and the environment."""
  entries: List[Tuple[str, str]] = []
  if token_file:
    try:
      with open(token_file, encoding='utf-8') as f:
        lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
      raise AccessError(f'--token-file {token_file}: cannot be read ({e.__class__.__name__})'
                        ) from None
    entries += [(f'{token_file} line {n}', l) for n, l in enumerate(lines, 1)
                if l.strip() and not l.lstrip().startswith('#')]
  entries += [(ENV_VAR, e) for e in re.split(r'[\s,]+', environ.get(ENV_VAR, '')) if e]
  return _parse(entries)


class Gate:
  """Decides who a request is: the token's name, or None (refused)."""

  def __init__(self, tokens: Dict[str, str], host: str):
    self.tokens = dict(tokens)
    self.open_rest = is_loopback(host)  # TF Serving's API without a token: loopback only
    if not tokens and not is_loopback(host):
      raise AccessError(f'serve --host {host} listens beyond loopback: give reviewers access '
                        f'tokens first (--token-file with name:token lines, or {ENV_VAR}); '
                        'see docs/live-and-serving.md')

  @property
  def enabled(self) -> bool:
    return bool(self.tokens)

  def name_of(self, token: Optional[str]) -> Optional[str]:
    """The name of `token`; every known token is compared (constant time, no early exit)."""
    found = None
    given = (token or '').encode()
    for name, known in self.tokens.items():
      if hmac.compare_digest(given, known.encode()) and token:
        found = name
    return found

  def needs_token(self, path: str) -> bool:
    return self.enabled and not (self.open_rest and path.startswith('/v1/models/'))

  @staticmethod
  def presented(headers: Dict[str, str]) -> Optional[str]:
    """The token a request carries: its Bearer header, else its cookie."""
    scheme, _, value = headers.get('authorization', '').partition(' ')
    if scheme.lower() == 'bearer' and value.strip():
      return value.strip()
    jar = http.cookies.SimpleCookie()
    try:
      jar.load(headers.get('cookie', ''))
    except http.cookies.CookieError:
      return None
    return jar[COOKIE].value if COOKIE in jar else None


def login_query(query: str) -> Tuple[Optional[str], str]:
  """(the `token` of a query string, the query string without it)."""
  pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
  token = next((v for k, v in pairs if k == 'token'), None)
  return token, urllib.parse.urlencode([(k, v) for k, v in pairs if k != 'token'])


def inside(root: str, relative: str) -> str:
  """The real path of `relative` under `root`, if it is a regular file there: no absolute
  paths, no `..`, no symlink that leads out of `root`. Raises KeyError otherwise."""
  if not root or not relative or os.path.isabs(relative) or '\\' in relative or '\0' in relative:
    raise KeyError(relative)
  if '..' in relative.split('/'):
    raise KeyError(relative)
  base = os.path.realpath(root)
  path = os.path.realpath(os.path.join(base, relative))
  if os.path.commonpath([base, path]) != base or not os.path.isfile(path):
    raise KeyError(relative)
  return path
