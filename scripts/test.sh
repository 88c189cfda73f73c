#!/usr/bin/env bash
# Install the pinned environment (if needed) and run the unit, notebook regression and browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c requirements-lock.txt -e ".[dev]"
# The browser test (tests/test_browser.py) drives the system's Chromium with Playwright (which downloads no browser):
# install Debian's package when it is missing and we can.
if ! command -v chromium >/dev/null && [ -z "${LPFT_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    t=$(date +%s)
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    echo "test.sh: installed chromium in $(( $(date +%s) - t )) s"
  else
    echo "test.sh: Chromium not found; install Debian's 'chromium' package (or set LPFT_CHROMIUM) for the browser test" >&2
  fi
fi
.venv/bin/python -m pytest -n "${JOBS:-2}" "$@"
