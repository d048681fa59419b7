"""Helpers shared by the benchmarks: timing, fio, running the collection through ansible-playbook."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = pathlib.Path(os.environ.get("KVM_IMAGES_VENV", ROOT / ".venv"))
COLLECTIONS = ROOT / "build" / "collections"
COPIED: list[bool] = []
# The lab's helper that defines, starts, watches and removes test guests.
LABCTL = [str(VENV / "bin" / "python"), str(ROOT / "tests" / "guest" / "labctl.py")]

# A bench stopped with kill (SIGTERM) still runs its finally and removes the guests it defined; without this
# they stay defined and later runs see them on the host.
signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def collections_path() -> str:
    """A collections path holding a copy of this working tree, taken once per bench run, so that
    editing the tree while a bench runs changes nothing under it."""
    if not COPIED:
        link = COLLECTIONS / "ansible_collections" / "kvm" / "images"
        if link.is_symlink():
            link.unlink()
        subprocess.run([str(ROOT / "tools" / "collection-tree.sh"), str(COLLECTIONS)], check=True,
                       capture_output=True)
        COPIED.append(True)
    return str(COLLECTIONS)


def timed(argv: list[str], **kwargs: t.Any) -> float:
    """Seconds the command took."""
    started = time.monotonic()
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except subprocess.CalledProcessError as exc:
        sys.stderr.write(f"{exc.cmd[0]} failed (exit {exc.returncode}); the end of its output:\n"
                         f"{exc.stdout[-4000:]}{exc.stderr[-2000:]}\n")
        raise
    return time.monotonic() - started


def output(argv: list[str], **kwargs: t.Any) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs).stdout


def drop_caches() -> None:
    """Cold caches for each run where the kernel lets us (root on a VM); else warm, but equal for all."""
    subprocess.run(["sync"], check=True)
    try:
        pathlib.Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def fio_bandwidth(directory: str, mode: str, size: str = "2G") -> float:
    """Sequential bandwidth in bytes/s with direct I/O and 1 MiB blocks."""
    path = os.path.join(directory, "fio.dat")
    report = output(["fio", "--name=seq", f"--rw={mode}", "--bs=1M", f"--size={size}", "--direct=1",
                     "--ioengine=psync", f"--filename={path}", "--output-format=json"])
    job = json.loads(report)["jobs"][0]
    return float(job["read" if mode == "read" else "write"]["bw_bytes"])


def fio_copy_bandwidth(directory: str, size: str = "2G") -> float:
    """Bytes/s a copy within one file system can move: a sequential reader and a sequential writer at the
    same time (direct I/O, 1 MiB blocks), as a conversion does; the slower of the two while both run."""
    source, target = os.path.join(directory, "fio-read.dat"), os.path.join(directory, "fio-write.dat")
    output(["fio", "--name=prepare", "--rw=write", "--bs=1M", f"--size={size}", "--direct=1",
            f"--filename={source}", "--output-format=json"])
    report = output(["fio", "--ioengine=psync", "--bs=1M", f"--size={size}", "--direct=1", "--output-format=json",
                     "--name=read", "--rw=read", f"--filename={source}",
                     "--name=write", "--rw=write", f"--filename={target}"])
    jobs = {job["jobname"]: job for job in json.loads(report)["jobs"]}
    for path in (source, target):
        os.unlink(path)
    return float(min(jobs["read"]["read"]["bw_bytes"], jobs["write"]["write"]["bw_bytes"]))


def run_playbook(tasks: list[dict[str, t.Any]]) -> tuple[float, list[dict[str, t.Any]]]:
    """Run tasks on localhost through ansible-playbook; returns wall time and each task's result."""
    with tempfile.TemporaryDirectory() as scratch:
        results_file = os.path.join(scratch, "results.json")
        names = [f"bench_{index}" for index in range(len(tasks))]
        for task, name in zip(tasks, names):
            task["register"] = name
        collect = {"ansible.builtin.copy": {"dest": results_file, "mode": "0600",
                                            "content": "{{ [" + ", ".join(names) + "] | to_json }}"}}
        play = [{"hosts": "localhost", "gather_facts": False, "tasks": tasks + [collect]}]
        playbook = os.path.join(scratch, "bench.yml")
        with open(playbook, "w", encoding="utf-8") as handle:
            json.dump(play, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections_path(),
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
                   ANSIBLE_PYTHON_INTERPRETER=str(VENV / "bin" / "python"))
        seconds = timed([str(VENV / "bin" / "ansible-playbook"), playbook], env=env)
        with open(results_file, encoding="utf-8") as handle:
            return seconds, json.load(handle)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def labctl(*args: str) -> dict:
    """Run the lab's helper; its answer (JSON)."""
    return json.loads(output(LABCTL + list(args)))
