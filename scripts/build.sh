#!/usr/bin/env bash
# Install the pinned environment, execute every chapter in the quick profile, build the HTML book
# (with the pinned MathJax from npm, so that it renders offline).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c requirements-lock.txt -e ".[dev]"
# MathJax for the book, served from the built site (package.json + package-lock.json pin it; no CDN at view time)
command -v npm >/dev/null || { echo "build.sh: npm (Node.js) is needed to install MathJax for the book" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
.venv/bin/lpft-run --profile "${PROFILE:-quick}" --jobs "${JOBS:-2}" --no-progress
.venv/bin/jupyter-book build . -W -n --keep-going
echo "book: $(pwd)/_build/html/index.html"
