#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint (ruff), then run the whole test suite. Extra arguments go to pytest.
#   scripts/test.sh --fast   the fast tier only: every test that starts no process (tests/conftest.py), in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
select=()
if [ "${1:-}" = "--fast" ]; then
  shift
  select=(-m fast)
fi
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -rfEs --durations=15 "${select[@]}" "$@"
