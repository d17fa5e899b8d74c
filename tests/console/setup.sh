#!/usr/bin/env bash
# Installs what the console's browser test (tests/console.rs,
# `the_console_in_a_real_browser`) drives:
#   - Chromium from Debian (`apt-get install chromium`, as root; elsewhere
#     it must be there already);
#   - Playwright and pytest from PyPI into target/console-tools/venv, pinned by
#     requirements.txt. Playwright is pointed at Debian's Chromium, so it
#     never downloads a browser of its own (no `playwright install`).
# Idempotent: the venv is redone only when requirements.txt changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/console-tools"
mkdir -p "$tools"

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed (apt-get install chromium, as root)" >&2
    exit 1
  fi
fi

stamp_ok() { [ -f "$2" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$(cat "$2")" ]; }
stamp() { sha256sum "$1" | cut -d' ' -f1 > "$2"; }

req="$root/tests/console/requirements.txt"
if ! stamp_ok "$req" "$tools/venv.stamp" || [ ! -x "$tools/venv/bin/python" ]; then
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  stamp "$req" "$tools/venv.stamp"
fi
