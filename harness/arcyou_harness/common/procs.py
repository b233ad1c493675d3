"""Process helpers for the benchmark (Linux): file-descriptor limits, CPU time and RSS from /proc.

Everything here is blocking and cheap; nothing needs psutil.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import signal
import sys
from pathlib import Path

import attrs

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def raise_nofile() -> tuple[int, int]:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def try_raise_hard_nofile(want: int) -> tuple[int, int]:
    """Try to raise RLIMIT_NOFILE (soft and hard) to ``want`` (needs CAP_SYS_RESOURCE above the
    current hard limit); fall back to the hard limit. Return the limits now in force."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if want > hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    return raise_nofile()


def child_limits() -> None:
    """``preexec_fn``: raise the fd limit as far as this user may."""
    try_raise_hard_nofile(1 << 20)


def child_setup() -> None:
    """``preexec_fn`` for the services: :func:`child_limits`, and receive SIGTERM when the
    benchmark dies (nothing is left running).

    Only for children forked by the main thread: the "parent death" signal fires when the
    *thread* that forked the child exits (trio's ``open_process`` forks on a worker thread).
    """
    child_limits()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def nofile_limit_of(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of a running process (from /proc/<pid>/limits)."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu seconds, reaped children's cpu seconds) of one process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return ppid, (utime + stime) / _TICKS, (cutime + cstime) / _TICKS


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of one process so far."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


@attrs.frozen
class Proc:
    ppid: int
    cpu: float  # own user + system seconds
    reaped: float  # children's, once waited for
    name: str


def all_processes() -> dict[int, Proc]:
    """Every process on the machine (that we may read)."""
    out: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None:
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            name = " ".join(x.decode(errors="replace") for x in raw if x)[:120]
        except OSError:
            name = "?"
        out[int(entry)] = Proc(stat[0], stat[1], stat[2], name)
    return out


def descendants(table: dict[int, Proc], root: int) -> set[int]:
    """``root`` and every process below it."""
    found = {root}
    children: dict[int, list[int]] = {}
    for pid, proc in table.items():
        children.setdefault(proc.ppid, []).append(pid)
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def machine_cpu_seconds() -> dict[str, float]:
    """CPU seconds the whole machine spent busy (all CPUs) and, of that, in interrupts."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return {}
    v = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal...; guest time is inside user/nice; steal
    # is time the hypervisor gave to other machines: not ours.
    return {"busy": (v[0] + v[1] + v[2] + v[5] + v[6]) / _TICKS, "irq": (v[5] + v[6]) / _TICKS}


def machine_info() -> dict[str, object]:
    """nproc, RAM, CPU model, kernel, python: what the figures depend on."""
    info: dict[str, object] = {
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
    }
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info["nofile_limit"] = f"{soft}/{hard}"
    with contextlib.suppress(OSError):
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        info["ephemeral_ports"] = int(high) - int(low) + 1
    return info
