#!/usr/bin/env bash
# Install the pinned environment, execute every chapter in the quick profile, build the HTML book.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c requirements-lock.txt -e ".[dev]"
.venv/bin/lpft-run --profile "${PROFILE:-quick}" --jobs "${JOBS:-2}" --no-progress
.venv/bin/jupyter-book build . -W -n --keep-going
echo "book: $(pwd)/_build/html/index.html"
