#!/usr/bin/env bash
# Run the test phases from a copy of the tree inside ansible_collections/kvm/images.
# Usage: run-tests.sh [sanity] [units] [differential] [integration] [package] [lint] [docs] [oldest] [newest]
#        (default: all)
# Extra arguments for one phase: SANITY_ARGS, UNITS_ARGS, DIFFERENTIAL_ARGS, INTEGRATION_ARGS
# (e.g. INTEGRATION_ARGS=qemu_image_info to run one target).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv=${KVM_IMAGES_VENV:-$root/.venv}
lab_dir=${KVM_IMAGES_LAB:-/var/lib/kvm-images-lab}
python_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
phases=("$@")
[ "${#phases[@]}" -gt 0 ] || phases=(sanity units differential integration package lint docs oldest newest)

export PATH="$venv/bin:$PATH"
export ANSIBLE_FORCE_COLOR=0
work=$(mktemp -d /tmp/kvm-images-tests.XXXXXX)
trap 'rm -rf "$work"' EXIT
collection=$("$root/tools/collection-tree.sh" "$work")

# Values the integration targets read as extra vars.
cat > "$collection/tests/integration/integration_config.yml" <<YAML
---
kvm_images_lab_dir: $lab_dir
kvm_images_labctl: $collection/tests/guest/labctl.py
YAML

declare -A took=()
status=0
for phase in "${phases[@]}"; do
  started=$(date +%s)
  echo "==> phase $phase"
  case $phase in
    sanity)
      # shellcheck disable=SC2086
      (cd "$collection" && ansible-test sanity --color no --venv --python "$python_version" ${SANITY_ARGS:-}) || status=1
      ;;
    units)
      # shellcheck disable=SC2086
      (cd "$collection" && ansible-test units --color no --local --python "$python_version" ${UNITS_ARGS:-}) || status=1
      ;;
    differential)
      # The inspector against qemu-img itself, under strace (tests/differential).
      # shellcheck disable=SC2086
      (cd "$collection" && PYTHONPATH="$work" "$venv/bin/python" -m pytest -p no:cacheprovider -q \
        tests/differential ${DIFFERENTIAL_ARGS:-}) || status=1
      ;;
    integration)
      # shellcheck disable=SC2086
      (cd "$collection" && ansible-test integration --color no --local --python "$python_version" \
        --allow-root --allow-destructive --continue-on-error ${INTEGRATION_ARGS:-}) || status=1
      ;;
    package)
      "$root/tools/package-check.sh" || status=1
      ;;
    lint)
      "$root/tools/lint.sh" || status=1
      ;;
    docs)
      "$root/tools/docs-site.sh" || status=1
      ;;
    oldest|newest)
      "$root/tools/version-check.sh" "$phase" || status=1
      ;;
    *)
      echo "unknown phase: $phase" >&2
      exit 2
      ;;
  esac
  took[$phase]=$(( $(date +%s) - started ))
done

echo "==> phase times"
for phase in "${phases[@]}"; do
  echo "    $phase: ${took[$phase]} s"
done
[ "$status" -eq 0 ] && echo "==> all phases passed" || echo "==> FAILED"
exit "$status"
