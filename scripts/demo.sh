#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the main job on the embedded default: the demo harness (harness/demo.py:
# stack + simulator, full backup, guest writes, incremental, restore, byte-for-byte comparison).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m harness.demo "$@"
