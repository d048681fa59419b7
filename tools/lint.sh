#!/usr/bin/env bash
# ansible-lint (production profile, offline) on the roles and playbooks, ruff on the
# Python (ruff.toml), and antsibull-docs' lint of every plugin's documentation, from a
# copy of the tree under ansible_collections/kvm/images.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-lint
"$root/tools/lint-venv.sh"
work=$(mktemp -d /tmp/kvm-images-lint.XXXXXX)
trap 'rm -rf "$work"' EXIT
collection=$("$root/tools/collection-tree.sh" "$work")
cd "$collection"
export ANSIBLE_COLLECTIONS_PATH=$work NO_COLOR=1 PATH="$venv/bin:$PATH"
ansible-lint --format=pep8 roles playbooks
ruff check --no-cache .
echo "==> ruff: clean"
antsibull-docs lint-collection-docs --plugin-docs .
echo "==> antsibull-docs: collection docs lint clean"
antsibull-changelog lint
# Render the release notes in the throw-away copy: the fragments must make a changelog.
antsibull-changelog release --version "$(sed -n 's/^version: //p' galaxy.yml)" >/dev/null
grep -q '^## v' CHANGELOG.md
echo "==> antsibull-changelog: fragments lint clean, CHANGELOG.md renders ($(grep -c '^\* ' CHANGELOG.md) entries)"
