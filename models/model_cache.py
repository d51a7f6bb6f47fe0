"""The one cache of loaded models: a bounded LRU keyed by file (or folder) path and modification
time, so a re-saved file is loaded again and repeated runs reuse what is already in memory."""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class ModelCache(Generic[T]):
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, float], T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike, load: Callable[[Path], T]) -> T:
        """The cached object for ``path``, or ``load(path)`` stored for next time (the least
        recently used one goes when more than ``size`` are held)."""
        path = Path(path)
        key = (str(path), os.path.getmtime(path))
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        obj = load(path)
        with self._lock:
            self._items[key] = obj
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return obj

    def paths(self) -> list[str]:
        """The paths held now, least recently used first."""
        with self._lock:
            return [path for path, _ in self._items]
