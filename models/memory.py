"""Memory checks made before allocating: refuse a request that cannot fit, naming both numbers."""
from __future__ import annotations

import torch

# the share of what is free that one request may take: the rest is the caller's, ComfyUI's
# and the operating system's
USABLE_SHARE = 0.8


def available_memory_bytes(device: torch.device | str = "cpu") -> int | None:
    """Free memory on ``device`` (MemAvailable for the CPU), or None when it cannot be read."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def require_memory(need: int, what: str, fix: str, device: torch.device | str = "cpu") -> None:
    """Raise MemoryError when ``need`` bytes exceed the usable share of what ``device`` has free."""
    free = available_memory_bytes(device)
    if free is not None and need > USABLE_SHARE * free:
        raise MemoryError(f"{what} needs about {gib(need)} but only {gib(free)} is free "
                          f"({torch.device(device).type} memory); {fix}")
