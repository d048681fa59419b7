#!/usr/bin/env bash
# Build the collection artifact, install it into a clean collections path, and
# use it from there: every module's ansible-doc page, a read-only module on the
# local libvirtd, and the plan playbook (which changes nothing).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KVM_IMAGES_VENV:-$root/.venv}
work=$(mktemp -d /tmp/kvm-images-package.XXXXXX)
trap 'rm -rf "$work"' EXIT

tree=$("$root/tools/collection-tree.sh" "$work/src")
(cd "$tree" && "$venv/bin/ansible-galaxy" collection build --output-path "$work/dist" >/dev/null)
artifact=$(ls "$work"/dist/kvm-images-*.tar.gz)
export ANSIBLE_COLLECTIONS_PATH=$work/installed
export ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
"$venv/bin/ansible-galaxy" collection install -p "$work/installed" "$artifact" >/dev/null
echo "==> built and installed $(basename "$artifact")"
cd "$work"
count=0
for module in "$work"/installed/ansible_collections/kvm/images/plugins/modules/*.py; do
  name=$(basename "$module" .py)
  "$venv/bin/ansible-doc" "kvm.images.$name" >/dev/null
  count=$((count + 1))
done
"$venv/bin/ansible-doc" -t role kvm.images.disk_format >/dev/null
echo "==> ansible-doc: $count modules and the disk_format role documented from the installed copy"

"$venv/bin/ansible" localhost -m kvm.images.libvirt_disk_info -e "ansible_python_interpreter=$venv/bin/python" >/dev/null
echo "==> kvm.images.libvirt_disk_info ran from the installed copy"

"$venv/bin/ansible-playbook" kvm.images.plan -i localhost, -c local \
  -e disk_format_hosts=localhost -e "ansible_python_interpreter=$venv/bin/python" \
  -e '{"disk_format_include": ["kvm-images-package-check-*"]}' -e "disk_format_report_dir=$work/report" >/dev/null
test -s "$work/report/report.json"
echo "==> kvm.images.plan ran from the installed copy and wrote its report"
