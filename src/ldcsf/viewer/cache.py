"""A least-recently-used store bounded by bytes, shared by the server's threads.

Hand-written because `functools.lru_cache` bounds the number of entries, not their size, and
tiles differ a hundredfold in size (a blank PNG against a detailed JPEG): a byte bound is what
keeps the server's memory flat however many slides and tiles are viewed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class ByteLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], bytes]) -> bytes:
        """The cached value, or `make()`'s (computed outside the lock, so threads don't wait on each other)."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
                return value
        value = make()
        with self._lock:
            if key not in self._items and len(value) <= self.max_bytes:
                self._items[key] = value
                self.bytes += len(value)
                while self.bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.bytes -= len(old)
        return value

    def __len__(self) -> int:
        return len(self._items)
