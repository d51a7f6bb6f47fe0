"""How many intra-op threads one call gets, and setting them only for that call.

On a machine whose cores are shared (another job, a second ComfyUI prompt, a trainer), torch's
threads spin-wait for each other at every operator: a small job (batch-1 generation, one prompt's
encoding, a small tile) then runs many times slower on two threads than on one, because each of
its thousands of short operators waits for a core that is busy elsewhere. Large jobs amortise the
wait. So small jobs run on one thread and large ones on all of torch's; ``benchmark-threads``
measures both sides of the threshold, quiet and beside a competing process.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

# below this much work per call (floating-point operations) one thread is used; measured by
# `benchmark-threads`: batch-1 64 px generation (0.2 GFLOP) and one prompt's encoding run faster
# on one thread beside a competing process and within a few per cent of two threads when quiet
SMALL_JOB_FLOPS = 2e9
ENV_THREADS = "PROMPTGAN_THREADS"    # a fixed count for every call (0 or unset: this policy)


def threads_for(flops: float) -> int:
    """Intra-op threads for a call doing about ``flops`` of work."""
    fixed = int(os.environ.get(ENV_THREADS, "0") or 0)
    if fixed > 0:
        return fixed
    return 1 if flops < SMALL_JOB_FLOPS else torch.get_num_threads()


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
