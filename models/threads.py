"""How many intra-op threads one call gets, and setting them only for that call.

On a machine whose cores are shared (another job, a trainer, a second program), torch's threads
spin-wait for each other at every operator: a job on two threads beside a competing process ran
2-5x slower than quiet, while the same job on one thread ran at its quiet speed
(`benchmark-threads`). So each call first counts the cores other processes are using right now
(the runnable tasks of /proc/loadavg, minus this process's own running threads: their OpenMP
workers spin between operators and would count otherwise) and uses only the free ones, never more
than torch's setting. Where /proc is missing (macOS, Windows) torch's setting is used as it is.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

ENV_THREADS = "PROMPTGAN_THREADS"    # a fixed count for every call (0 or unset: this policy)


def _running_tasks_elsewhere() -> int | None:
    """Tasks running or runnable now in other processes, or None without /proc."""
    try:
        with open("/proc/loadavg") as f:
            total = int(f.read().split()[3].split("/")[0])
        mine = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as f:
                    stat = f.read()
            except OSError:
                continue                      # the thread ended while we looked
            mine += stat[stat.rindex(")") + 2] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, total - mine)


def busy_cores(samples: int = 3) -> int:
    """Cores other processes keep busy: the least of a few instant readings (one reading can
    catch a short-lived task), 0 where it cannot be read."""
    readings = [r for r in (_running_tasks_elsewhere() for _ in range(samples)) if r is not None]
    return min(readings) if readings else 0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_for_call() -> int:
    """Intra-op threads for the next call: torch's count, less the cores busy elsewhere."""
    fixed = int(os.environ.get(ENV_THREADS, "0") or 0)
    if fixed > 0:
        return fixed
    return threads_beside_load(torch.get_num_threads())


def threads_beside_load(most: int) -> int:
    """``most`` threads (0: one per core), less the cores busy elsewhere right now, at least one:
    the policy of every call, and of a long job that checks the load as it goes
    (``train-gan --follow-load``)."""
    cores = available_cores()
    most = int(most) if most and int(most) > 0 else cores
    return max(1, min(most, cores - busy_cores()))


@contextmanager
def intra_op_threads(n: int):
    """torch.set_num_threads(n) inside the block; the caller's setting (ComfyUI's) after it."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextmanager
def threads_for_this_call(device: torch.device | str = "cpu"):
    """The policy for one call on ``device`` (only CPU calls are affected)."""
    if torch.device(device).type != "cpu":
        yield
        return
    with intra_op_threads(threads_for_call()):
        yield
