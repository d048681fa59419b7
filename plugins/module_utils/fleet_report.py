# Copyright (c) kvm.images contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report: one record per host of the play - reached or not - and per disk, and its HTML
(private to kvm.images).

Everything here is linear in the number of records: a report of 1,000 hosts with 8 disks each is built and
rendered in well under a second.
"""

from __future__ import annotations

import fnmatch
import html
import time
import typing as t

from ansible_collections.kvm.images.plugins.module_utils.schedule import utc

HOST_STATUSES = ("failed", "unreachable", "not reached", "deferred", "changed", "planned", "converged")
DISK_STATUSES = ("converted", "failed", "deferred", "planned", "not reached", "ok", "skipped")
PLAN_STATUS = {"ok": "ok", "skip": "skipped", "defer": "deferred"}


def disk_records(plan: list[dict[str, t.Any]], results: list[dict[str, t.Any]], host: str, *,
                 planning: bool = False) -> list[dict[str, t.Any]]:
    """Every planned disk once, in plan order: what the run did with it, else what the plan said.

    ``results`` carry a ``status`` each (converted, failed, deferred); a disk to convert without one was
    ``planned`` (a plan or a check-mode run) or ``not reached`` (its host failed first).
    """
    done = {(result["domain"], result["target"]): result for result in results}
    records = []
    for planned in plan:
        result = done.get((planned["domain"], planned["target"]))
        if result is not None:
            record = dict(planned, **result)
            if planning and record.get("status") == "converted":
                # Check mode: the module predicted the conversion; nothing was converted.
                record["status"] = "planned"
        elif planned["action"] == "convert":
            record = dict(planned, status="planned" if planning else "not reached")
        else:
            record = dict(planned, status=PLAN_STATUS[planned["action"]])
        record["host"] = host
        records.append(record)
    return records


def host_status(disks: list[dict[str, t.Any]], failure: dict[str, t.Any] | None) -> str:
    if failure:
        return "unreachable" if failure.get("unreachable") else "failed"
    found = {disk.get("status") for disk in disks}
    for status, host_word in (("failed", "failed"), ("deferred", "deferred"), ("converted", "changed"),
                              ("planned", "planned")):
        if status in found:
            return host_word
    return "converged"


def host_record(host: str, *, plan: list[dict[str, t.Any]] | None = None,
                results: list[dict[str, t.Any]] | None = None, failure: dict[str, t.Any] | None = None,
                hypervisor: dict[str, t.Any] | None = None, domains: list[str] | None = None,
                planning: bool = False, overrides: t.Iterable[str] = (),
                include: t.Iterable[str] = ("*",)) -> dict[str, t.Any]:
    """What became of one host: its status, the step and message of a failure, its versions, its disks, and
    the domain settings it was given (``overrides``: the names of its disk_format_domains; ``include``)."""
    disks = disk_records(plan or [], results or [], host, planning=planning)
    counts = count((disk["status"] for disk in disks), ())
    return {
        "host": host,
        "status": host_status(disks, failure),
        "summary": ", ".join(f"{number} disk(s) {status}" for status, number in counts.items()) or "no disks",
        "step": (failure or {}).get("step"),
        "msg": (failure or {}).get("msg"),
        "hypervisor": hypervisor or {},
        "domains": sorted(domains or []),
        "settings": {"overrides": sorted(overrides), "include": list(include)},
        "disks": disks,
    }


def unmatched_settings(overrides: t.Iterable[str], include: t.Iterable[str], domains: set[str]) -> list[str]:
    """The per-domain settings and include patterns that name no domain of any host."""
    unmatched = [f"disk_format_domains entry {name!r} matches no domain" for name in sorted(overrides)
                 if name not in domains]
    # The default "*" matching nothing only says that there are no domains.
    unmatched += [f"disk_format_include pattern {pattern!r} matches no domain" for pattern in include
                  if pattern != "*" and not any(fnmatch.fnmatchcase(name, pattern) for name in domains)]
    return unmatched


def missing_host(host: str, failed: bool) -> dict[str, t.Any]:
    """A host of the play without a record of its own: it never ran the role, or has not yet."""
    if failed:
        failure = {"unreachable": True, "step": "connect",
                   "msg": "the controller could not reach it, or it failed before the role ran"}
        return host_record(host, failure=failure)
    return dict(host_record(host), status="not reached", msg="its batch has not run yet")


def fleet_report(records: list[dict[str, t.Any]], *, play_hosts: list[str], active_hosts: list[str] | None = None,
                 mode: str = "migrate", generated: float | None = None) -> dict[str, t.Any]:
    """The whole report: every host of the play, in play order, then any other host that left a record.

    A host without a record is unreachable (or failed before the role ran) unless it is still among
    ``active_hosts`` - the hosts of later batches, which have not run yet. A domain setting of any host that
    names no domain of any host is listed as unmatched.
    """
    by_host = {record["host"]: record for record in records}
    # Without active_hosts every host has had its turn.
    active = set(active_hosts or ())
    hosts = [by_host.get(host) or missing_host(host, failed=active_hosts is None or host not in active)
             for host in play_hosts]
    in_play = set(play_hosts)
    hosts += [record for host, record in by_host.items() if host not in in_play]
    disks = [disk for host in hosts for disk in host["disks"]]
    domains = {name for host in hosts for name in host["domains"]}
    overrides = {name for host in hosts for name in host.get("settings", {}).get("overrides", [])}
    include = list(dict.fromkeys(pattern for host in hosts for pattern in host.get("settings", {}).get("include", [])))
    reached = any(host["domains"] for host in hosts)
    return {
        "generated": utc(generated or time.time()),
        "mode": mode,
        "summary": summary(hosts, disks),
        # Without a host that got as far as listing its domains, nothing can be said to match nothing.
        "unmatched": unmatched_settings(overrides, include, domains) if reached else [],
        "hosts": [dict(host, disks=len(host["disks"])) for host in hosts],
        "disks": disks,
    }


def records_of_reports(reports: list[dict[str, t.Any]]) -> tuple[list[dict[str, t.Any]], list[str]]:
    """Host records and the hosts in order, from the report.json of several runs - shards of one fleet, or the
    slices of an AWX job. A host in more than one keeps the record of the report generated last."""
    by_host: dict[str, dict[str, t.Any]] = {}
    for report in sorted(reports, key=lambda report: report.get("generated", "")):
        disks: dict[str, list[dict[str, t.Any]]] = {}
        for disk in report.get("disks", []):
            disks.setdefault(disk["host"], []).append(disk)
        for host in report.get("hosts", []):
            by_host[host["host"]] = dict(host, disks=disks.get(host["host"], []))
    return list(by_host.values()), list(by_host)


def merged_mode(reports: list[dict[str, t.Any]]) -> str:
    """What the merged runs were: their common mode; migrate when they differ (nothing claims "no change")."""
    modes = {report.get("mode") or "migrate" for report in reports}
    return modes.pop() if len(modes) == 1 else "migrate"


def count(values: t.Iterable[str], names: t.Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def summary(hosts: list[dict[str, t.Any]], disks: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    converted = [disk for disk in disks if disk.get("status") == "converted"]
    planned = [disk for disk in disks if disk.get("status") in ("planned", "not reached", "deferred")]
    return {
        "hosts": len(hosts),
        "host_status": count((host["status"] for host in hosts), HOST_STATUSES),
        "disks": len(disks),
        "disk_status": count((disk.get("status") or "unknown" for disk in disks), DISK_STATUSES),
        "size_before": sum(int(disk.get("source_size") or 0) for disk in converted),
        "size_after": sum(int(disk.get("dest_size") or 0) for disk in converted),
        "planned_required": sum(int(disk.get("required") or 0) for disk in planned),
    }


def human_size(value: t.Any) -> str:
    if value in (None, ""):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PiB"


def cell(value: t.Any, css: str = "") -> str:
    text = "–" if value in (None, "") else str(value)
    return f"<td{f' class={css!r}' if css else ''}>{html.escape(text)}</td>"


STYLE = """body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; } td.num { text-align: right; }
tr.converted, tr.changed, tr.converged { background: #e6f4e6; }
tr.failed, tr.unreachable { background: #f8d7d7; }
tr.skipped, tr.deferred, tr.not-reached { background: #fff4d6; }
ul.unmatched li { color: #8a4b00; }"""


def render_html(report: dict[str, t.Any]) -> str:
    """The report as one page: summary, chart, hosts, settings that matched nothing, every disk by host."""
    total = report["summary"]
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>kvm.images disk format report</title>", f"<style>\n{STYLE}\n</style>", "</head>", "<body>",
             "<h1>Disk format report</h1>", f'<p id="summary">{html.escape(summary_line(report))}</p>',
             space_chart(total["size_before"], total["size_after"]), "<h2>Hosts</h2>", host_table(report["hosts"])]
    if report["unmatched"]:
        parts.append("<h2>Settings that matched nothing</h2>")
        parts.append('<ul class="unmatched">' + "".join(f"<li>{html.escape(line)}</li>"
                                                        for line in report["unmatched"]) + "</ul>")
    parts.append("<h2>Disks</h2>")
    parts.append(disk_table(report["disks"]))
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def summary_line(report: dict[str, t.Any]) -> str:
    """``24 disks on 3 host(s): 16 converted, 0 failed, ...; hosts: 2 changed, 1 unreachable.``"""
    total = report["summary"]
    disks = ", ".join(f"{number} {status}" for status, number in total["disk_status"].items()
                      if number or status in ("converted", "failed"))
    hosts = ", ".join(f"{number} {status}" for status, number in total["host_status"].items() if number)
    line = f"{total['disks']} disks on {total['hosts']} host(s): {disks}; hosts: {hosts or 'none'}."
    if report["mode"] in ("plan", "check"):
        line += " Nothing was changed (" + ("plan" if report["mode"] == "plan" else "check mode") + ")."
    return line


def space_chart(before: int, after: int) -> str:
    scale = max(before, after, 1)
    bars = []
    for row, (name, value, color) in enumerate((("before", before, "#c0504d"), ("after", after, "#4f81bd"))):
        y = 10 + 40 * row
        width = round(380 * value / scale, 1)
        bars.append(f'<text x="0" y="{y + 15}">{name}</text><rect x="60" y="{y}" height="22" width="{width}"'
                    f' fill="{color}"></rect><text x="{66 + width}" y="{y + 15}">{human_size(value)}</text>')
    return ('<h2>Space of the converted disks, before and after</h2>\n<svg id="space-chart" width="600" height="90"'
            ' role="img" aria-label="space used before and after conversion">' + "".join(bars) + "</svg>")


def host_table(hosts: list[dict[str, t.Any]]) -> str:
    rows = ["<table id=\"hosts\"><tr><th>host</th><th>status</th><th>step</th><th>message</th><th>QEMU</th>"
            "<th>libvirt</th><th>Python</th><th>disks</th></tr>"]
    for host in hosts:
        versions = host.get("hypervisor") or {}
        rows.append(f'<tr class="{host["status"].replace(" ", "-")}" data-host="{html.escape(host["host"])}">'
                    + cell(host["host"]) + cell(host["status"]) + cell(host.get("step")) + cell(host.get("msg"))
                    + cell(versions.get("qemu_version")) + cell(versions.get("libvirt_version"))
                    + cell(versions.get("python_version")) + cell(host["disks"], "num") + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def disk_table(disks: list[dict[str, t.Any]]) -> str:
    rows = ["<table id=\"disks\"><tr><th>host</th><th>domain</th><th>disk</th><th>source</th><th>format before</th>"
            "<th>format after</th><th>size before</th><th>size after</th><th>method</th><th>duration (s)</th>"
            "<th>MiB/s</th><th>downtime (s)</th><th>status</th><th>reason</th></tr>"]
    for disk in disks:
        status = disk.get("status") or "unknown"
        after = disk.get("target_format") if status == "converted" else disk.get("source_format")
        method = disk.get("method")
        if disk.get("copy_mode"):
            method = f"{method}, {disk['copy_mode']}"
        rows.append(f'<tr class="{status.replace(" ", "-")}">' + cell(disk.get("host")) + cell(disk.get("domain"))
                    + cell(disk.get("target")) + cell(disk.get("source")) + cell(disk.get("source_format"))
                    + cell(after) + cell(human_size(disk.get("source_size")), "num")
                    + cell(human_size(disk.get("dest_size")), "num") + cell(method)
                    + cell(disk.get("duration_s"), "num") + cell(disk.get("throughput_mib_s"), "num")
                    + cell(disk.get("downtime_s"), "num") + cell(status)
                    + cell(disk.get("error") or disk.get("reason")) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)
