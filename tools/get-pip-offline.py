#!/usr/bin/env python
"""Stand-in for the pip bootstrap script ansible-test downloads for its sanity venvs.

The file host it downloads from is out of reach on our build machines; only the
package index is. This does the same job with what is at hand: pip from the
interpreter's own ensurepip, then the requested packages from the configured index.
ansible-test runs it as ``python get_pip.py [pip options] [--no-setuptools] [--no-wheel] pip==X``.
"""

from __future__ import annotations

import subprocess
import sys

GET_PIP_ONLY_OPTIONS = ("--no-setuptools", "--no-wheel")


def main(args: list[str]) -> int:
    pip_args = [arg for arg in args if arg not in GET_PIP_ONLY_OPTIONS]
    # In a child process: ensurepip blanks pip's configuration (index, CA
    # bundle) in the environment of the process that calls it.
    rc = subprocess.call([sys.executable, "-m", "ensurepip", "--upgrade"])
    pip = [sys.executable, "-m", "pip"]
    if rc == 0:
        rc = subprocess.call(pip + ["install", "--quiet"] + pip_args)
    if rc == 0 and "--no-setuptools" in args:
        # ensurepip brings setuptools along; get-pip would not have installed it.
        rc = subprocess.call(pip + ["uninstall", "--quiet", "--yes", "setuptools"])
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
