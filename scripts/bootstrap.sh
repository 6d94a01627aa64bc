#!/usr/bin/env bash
# Creates .venv with Python 3.10 and installs the project with the pinned TFX 1.16 stack and all
# its extras (a developer's setup; the Kubeflow image installs the core only).
# Idempotent: a second call only reinstalls the project itself (fast).
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; }

find_python310() {
  local c
  for c in "${PYTHON:-}" python3.10 python3 python; do
    [ -n "$c" ] && command -v "$c" >/dev/null 2>&1 && is_py310 "$(command -v "$c")" && { command -v "$c"; return; }
  done
  if command -v pyenv >/dev/null 2>&1; then
    local v
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$' | sort -V -r); do
      c="$(pyenv root)/versions/$v/bin/python3.10"
      is_py310 "$c" && { echo "$c"; return; }
    done
  fi
  return 1
}

if [ ! -x .venv/bin/python ] || ! is_py310 .venv/bin/python; then
  PY=$(find_python310) || {
    echo "error: Python 3.10 not found (TFX 1.16 needs Python >=3.9,<3.11)." >&2
    echo "  Install it (e.g. 'pyenv install 3.10.13') or set PYTHON=/path/to/python3.10." >&2
    exit 1
  }
  echo "[bootstrap] using $PY ($("$PY" --version))"
  rm -rf .venv
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.deps-installed ] || ! cmp -s constraints.txt .venv/.deps-installed; then
  echo "[bootstrap] installing pinned dependencies (first time: about 5 minutes)"
  # requirements.txt: the core, every setup.py extra (serve, report) and the test tools.
  .venv/bin/python -m pip install -q --upgrade "pip<25" wheel setuptools
  .venv/bin/python -m pip install -q -c constraints.txt -r requirements.txt
  cp constraints.txt .venv/.deps-installed
fi
.venv/bin/python -m pip install -q --no-deps --no-build-isolation --use-pep517 -e .
echo "[bootstrap] ready: $(.venv/bin/python --version), .venv/bin/vivit-tfx"
