#!/usr/bin/env bash
# Make (or keep) the virtualenv of the lint and docs tools, .venv-lint, from
# tests/requirements-lint.txt, apart from .venv so they cannot move its ansible-core.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-lint
python=${KVM_IMAGES_PYTHON:-python3}
want=$(sha256sum < "$root/tests/requirements-lint.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/sphinx-build" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q -r "$root/tests/requirements-lint.txt"
  echo "$want" > "$venv/.requirements.sha256"
fi
