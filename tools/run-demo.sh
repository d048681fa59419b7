#!/usr/bin/env bash
# Run playbooks/demo.yml on this machine from the working tree, installed under
# build/collections/ansible_collections/kvm/images (a link to the tree).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KVM_IMAGES_VENV:-$root/.venv}
collections=$root/build/collections
mkdir -p "$collections/ansible_collections/kvm"
ln -sfn "$root" "$collections/ansible_collections/kvm/images"

export ANSIBLE_COLLECTIONS_PATH=$collections
export ANSIBLE_PYTHON_INTERPRETER=$venv/bin/python
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export DEMO_REPORT_DIR=${DEMO_REPORT_DIR:-/var/lib/kvm-images-lab/demo-report}
"$venv/bin/ansible-playbook" kvm.images.demo "$@"
echo "==> report: $DEMO_REPORT_DIR/report.html"
