#!/usr/bin/env bash
# Install the pinned environment (if needed) and run the unit and notebook regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c requirements-lock.txt -e ".[dev]"
.venv/bin/python -m pytest -n "${JOBS:-2}" "$@"
