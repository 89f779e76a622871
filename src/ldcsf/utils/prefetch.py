"""Batches read one step ahead on a background thread, so reading overlaps the model.

With no DataLoader worker processes (the default on a small machine, where processes cost more
than they give), tiles would be read only while the model waits. A thread suffices to overlap
the two: OpenSlide (through ctypes), tifffile's JPEG decoding, torch's resize and the exported
runtimes all release the GIL. Written here because torch's DataLoader offers worker processes
only, and a thread pool's `map` would read the whole slide ahead instead of a bounded few batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()


class Prefetched(Iterator[T]):
    """Iterate `source` on a background thread, at most `depth` items ahead of the consumer.

    An exception raised while reading is raised in the consumer at the item it replaced. Use as a
    context manager (or call `close()`): leaving early stops the reader and waits for it, so the
    source (e.g. an open slide) can be closed safely afterwards.
    """

    def __init__(self, source: Iterable[T], depth: int = 2) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._source = source
        self._thread = threading.Thread(target=self._read, name="ldcsf-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._put((None, error))
            return
        self._put((_DONE, None))

    def __iter__(self) -> "Prefetched[T]":
        return self

    def __next__(self) -> T:
        item, error = self._items.get()
        if error is not None:
            self.close()
            raise error
        if item is _DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetched[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
