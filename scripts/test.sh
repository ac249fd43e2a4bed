#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff), then run the whole test suite. Extra arguments go to pytest.
#   scripts/test.sh --fast   the fast tier only: every test that starts no process (tests/conftest.py), in seconds
# The whole suite moves disk data over imageio's local socket, as a client on the host does; then the pipeline
# tests marked `data_path` run again over TLS, as a client elsewhere moves it (OLVM_TEST_IMAGEIO=tls runs any
# pipeline test that way).
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--fast" ]; then
  shift
  select=(-m fast)
fi
scripts/setup.sh
.venv/bin/ruff check .
if [ ${#select[@]} -eq 0 ] && [ $# -eq 0 ]; then
  # The whole suite on three workers, a test module each at a time (a module's simulator stays on its worker):
  # most of its time is spent waiting on the engine, the broker and the store, so three share two cores well
  # (fresh clones of the same tree, the machine busy with other work both times: 29 min on two, 14 on three).
  .venv/bin/python -m pytest -q -rfEs --durations=15 -n 3 --dist loadfile
  echo "== the data path again, over TLS =="
  OLVM_TEST_IMAGEIO=tls .venv/bin/python -m pytest -q -rfEs -n 3 --dist loadfile -m data_path tests/pipeline
else
  .venv/bin/python -m pytest -q -rfEs --durations=15 "${select[@]}" "$@"
fi
