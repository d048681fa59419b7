#!/usr/bin/env bash
# Build the docs site (module, filter and role pages from antsibull-docs, and the
# guides under docs/) with Sphinx, warnings as errors, into build/docs-site/, then
# check that every option and return value ansible-doc knows is on its page.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=$root/.venv-lint
"$root/tools/lint-venv.sh"
out=$root/build/docs-site
work=$(mktemp -d /tmp/kvm-images-docs.XXXXXX)
trap 'rm -rf "$work"' EXIT
collection=$("$root/tools/collection-tree.sh" "$work")
export ANSIBLE_COLLECTIONS_PATH=$work NO_COLOR=1 PATH="$venv/bin:$PATH"

rst=$work/rst
mkdir -m 700 "$rst"  # antsibull-docs writes only into a directory no one else can write to
antsibull-docs --config-file "$root/docs/site/antsibull-docs.cfg" collection \
  --use-current --cleanup everything --dest-dir "$rst" kvm.images >/dev/null
cp "$root/docs/site/index.rst" "$root/docs/site/ansible-references.rst" "$rst/"
mkdir "$rst/guide"
cp "$collection"/docs/*.md "$rst/guide/"

rm -rf "$out"
sphinx-build -q -W --keep-going -b html -c "$root/docs/site" "$rst" "$out"
python "$root/tools/docs_site_check.py" "$out" "$collection"
