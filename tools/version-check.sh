#!/usr/bin/env bash
# Sanity and units on another ansible-core: the oldest that meta/runtime.yml's
# requires_ansible admits, or the newest released. Each has its requirements in
# tests/requirements-NAME.txt (its ansible-core pin, and a "# python: X.Y" line for
# the lowest Python it runs on) and a virtualenv of its own (.venv-NAME) with the
# same hypervisor libraries and test tools as .venv.
# Usage: version-check.sh oldest|newest
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: version-check.sh oldest|newest}
requirements=$root/tests/requirements-$name.txt
venv=$root/.venv-$name
minimum=$(sed -n 's/^# python: *//p' "$requirements")
[ -n "$minimum" ] || { echo "$requirements has no '# python: X.Y' line" >&2; exit 2; }

# The lowest Python that is at least the minimum: python3.X on PATH, or pyenv's
# (whose shims are on PATH but may refuse to run a version not selected).
python=""
for minor in $(seq "${minimum#3.}" 14); do
  for candidate in "python3.$minor" /root/.pyenv/versions/"3.$minor".*/bin/"python3.$minor"; do
    if "$candidate" -c 'import venv' >/dev/null 2>&1; then
      python=$("$candidate" -c 'import sys; print(sys.executable)')
      break 2
    fi
  done
done
[ -n "$python" ] || { echo "no Python $minimum or newer for the $name ansible-core" >&2; exit 1; }

want=$({ echo "$python"; cat "$requirements" "$root/requirements.txt" "$root/tests/requirements.txt"; } | sha256sum | cut -d' ' -f1)
if [ ! -x "$venv/bin/ansible-test" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q -r "$requirements" -r "$root/tests/requirements.txt" \
    -r <(grep -v '^ansible-core' "$root/requirements.txt")
  echo "$want" > "$venv/.requirements.sha256"
fi
"$root/tools/seed-ansible-test-pip.sh" "$venv"
version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
core=$("$venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')

work=$(mktemp -d "/tmp/kvm-images-$name.XXXXXX")
trap 'rm -rf "$work"' EXIT
collection=$("$root/tools/collection-tree.sh" "$work")
cd "$collection"
export PATH="$venv/bin:$PATH"
status=0
echo "==> $name ansible-core $core on Python $version: sanity"
ansible-test sanity --color no --venv --python "$version" || status=1
echo "==> $name ansible-core $core on Python $version: units"
ansible-test units --color no --local --python "$version" || status=1
exit "$status"
