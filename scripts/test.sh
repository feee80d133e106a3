#!/usr/bin/env bash
# Install everything (idempotent) and run the whole test suite: ruff, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
PY="${STUDIO_VENV:-.venv}/bin/python"
echo "[test] ruff check"
"$PY" -m ruff check .
echo "[test] pytest"
set +e
"$PY" -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "[test] pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
