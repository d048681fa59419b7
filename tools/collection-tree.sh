#!/usr/bin/env bash
# Copy the working tree (tracked and new, unignored files) into
# DIR/ansible_collections/kvm/images, where ansible-test and ansible-playbook
# expect a collection to live. Prints the collection directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${1:?usage: collection-tree.sh DIR}
dest=$base/ansible_collections/kvm/images
rm -rf "$dest"
mkdir -p "$dest"
cd "$root"
git ls-files -z -c -o --exclude-standard |
  while IFS= read -r -d '' path; do [ -e "$path" ] && printf '%s\0' "$path"; done |
  tar --null -T - -cf - | tar -xf - -C "$dest"
echo "$dest"
