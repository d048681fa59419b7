# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What every module's main() does once its AnsibleModule exists (private to kvm.images)."""

from __future__ import annotations

import signal
import typing as t

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.kvm.images.plugins.module_utils.errors import KvmImagesError

# A Python library a module needs: its name on PyPI, whether it imported, and the import's traceback.
Library = t.Tuple[str, bool, t.Optional[str]]  # noqa: UP045 - evaluated at run time, on Python 3.8 too


class Interrupted(KvmImagesError):
    """SIGTERM (an async timeout, a stopped job) while the module worked: its cleanup runs on the way out."""


def interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(f"interrupted by signal {signum}")


def run_module(module: t.Any, run: t.Callable[[t.Any], dict[str, t.Any]], *,
               libraries: t.Sequence[Library] = (),
               on_os_error: t.Callable[[OSError], str] | None = None,
               on_interrupt: str | None = None) -> None:
    """Check the Python libraries the module needs, run it, and turn its failures into ``fail_json``.

    ``run`` returns the result; the collection's error becomes its ``msg`` and details. A SIGTERM raises
    inside ``run``, so that what it holds (a temp file, a copy job) is cleaned up on the way out;
    ``on_interrupt`` says what that left. An OSError that ``run`` did not turn into the collection's error
    is reported with ``on_os_error``'s message.
    """
    for name, present, import_error in libraries:
        if not present:
            module.fail_json(msg=missing_required_lib(name), exception=import_error)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        result = run(module)
    except Interrupted as exc:
        module.fail_json(msg=f"{exc.msg}; {on_interrupt}" if on_interrupt else exc.msg)
    except KvmImagesError as exc:
        module.fail_json(**exc.fail_json_kwargs())
    except OSError as exc:
        if on_os_error is None:
            raise
        module.fail_json(msg=on_os_error(exc))
    module.exit_json(**result)
