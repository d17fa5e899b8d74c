#!/usr/bin/env bash
# Installs the third-party editor tooling that tests/editors.rs drives:
#   - pytest-lsp (PyPI) into target/editor-tools/venv, pinned by requirements.txt;
#   - editors/vscode's npm packages (vsce, vscode-tmgrammar-test), from its lock file.
# Idempotent: each part is redone only when its pin file changes.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/editor-tools"
mkdir -p "$tools"

stamp_ok() { [ -f "$2" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$(cat "$2")" ]; }
stamp() { sha256sum "$1" | cut -d' ' -f1 > "$2"; }

req="$root/tests/editors/requirements.txt"
if ! stamp_ok "$req" "$tools/venv.stamp" || [ ! -x "$tools/venv/bin/python" ]; then
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  stamp "$req" "$tools/venv.stamp"
fi

lock="$root/editors/vscode/package-lock.json"
if ! stamp_ok "$lock" "$tools/npm.stamp" || [ ! -d "$root/editors/vscode/node_modules" ]; then
  (cd "$root/editors/vscode" && npm ci --no-audit --no-fund --loglevel=error)
  stamp "$lock" "$tools/npm.stamp"
fi
