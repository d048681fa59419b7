#!/usr/bin/env bash
# ansible-test bootstraps pip in its sanity venvs with a script from a file host
# these machines cannot reach; seed its cache with our stand-in for the pip
# version that VENV's ansible-test asks for.  Usage: seed-ansible-test-pip.sh VENV
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:?usage: seed-ansible-test-pip.sh VENV}
version=$("$venv/bin/python" - <<'PY'
import re, ansible_test, pathlib
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache=$HOME/.ansible/test/cache/get_pip_${version//./_}.py
mkdir -p "$(dirname "$cache")"
cmp -s "$root/tools/get-pip-offline.py" "$cache" || cp "$root/tools/get-pip-offline.py" "$cache"
