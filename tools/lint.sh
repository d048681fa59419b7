#!/usr/bin/env bash
# ansible-lint (production profile, offline) on the roles and playbooks, from a
# copy of the tree under ansible_collections/kvm/images.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-lint
python=${KVM_IMAGES_PYTHON:-python3}
want=$(sha256sum < "$root/tests/requirements-lint.txt" | cut -d' ' -f1)
if [ ! -x "$venv/bin/ansible-lint" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q -r "$root/tests/requirements-lint.txt"
  echo "$want" > "$venv/.requirements.sha256"
fi
work=$(mktemp -d /tmp/kvm-images-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT
collection=$("$root/tools/collection-tree.sh" "$work")
cd "$collection"
ANSIBLE_COLLECTIONS_PATH=$work NO_COLOR=1 "$venv/bin/ansible-lint" --format=pep8 roles playbooks
