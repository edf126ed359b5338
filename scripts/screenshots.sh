#!/usr/bin/env bash
# Refresh the screenshots in docs/img/ (shown in the README and docs/widget.md): the
# browser tests that take them, with their output folder pointed at docs/img/. A plain
# test run writes them to a temporary folder, so it never changes the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
MMRAG_SCREENSHOTS="$PWD/docs/img" python -m pytest -m browser -q \
  tests/test_browser.py tests/test_browser_widget.py -k "screenshot or ui"
git status --short docs/img
