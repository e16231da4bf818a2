#!/usr/bin/env bash
# Make sure uv exists, then create .venv from the hash-pinned lock file and install aifinops.
# Usage: scripts/bootstrap.sh [runtime|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
which_lock="${1:-dev}"
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x .tools/bin/uv ]; then
    echo "bootstrap: installing uv ${UV_VERSION} into .tools" >&2
    python3 -m venv .tools
    .tools/bin/python -m pip install --quiet "uv==${UV_VERSION}"
  fi
  export PATH="$PWD/.tools/bin:$PATH"
fi
stamp=".venv/.installed-${which_lock}"
lock="requirements/${which_lock}.txt"
if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x .venv/bin/python ] || uv venv --quiet --python "${PYTHON:-python3}" .venv
  uv pip sync --quiet --compile-bytecode --python .venv/bin/python --require-hashes "$lock"
  uv pip install --quiet --compile-bytecode --python .venv/bin/python --no-deps -e .
  touch "$stamp"
fi
# PYTHONDONTWRITEBYTECODE may be set: compile our own modules once, or every command
# recompiles them (stale files are recompiled here, and ignored by Python anyway)
if [ -d src/aifinops ]; then
  .venv/bin/python -m compileall -q -j 0 src/aifinops >/dev/null
fi
