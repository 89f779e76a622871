"""Reading one step ahead on a thread: same items in the same order, errors where they happened,
and an early exit that leaves no reader running."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ldcsf.export.figures import STORED_COLORMAPS, _colormap_table, matplotlib_colormap_table
from ldcsf.utils.prefetch import Prefetched


def test_items_arrive_in_order_and_the_reader_ends():
    with Prefetched(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))
    assert not any(t.name == "ldcsf-prefetch" and t.is_alive() for t in threading.enumerate())


def test_a_read_error_is_raised_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise OSError("slide.svs: truncated tile")

    seen = []
    with pytest.raises(OSError, match="truncated tile"):
        with Prefetched(source()) as items:
            for item in items:
                seen.append(item)
    assert seen == [1, 2]


def test_leaving_early_stops_the_reader_within_its_depth():
    read = []

    def source():
        for i in range(1000):
            read.append(i)
            yield i

    with Prefetched(source(), depth=2) as items:
        assert next(items) == 0
        time.sleep(0.3)  # the reader fills its queue and then waits
    assert len(read) <= 4  # the item taken, two queued, at most one waiting to be put
    assert not any(t.name == "ldcsf-prefetch" and t.is_alive() for t in threading.enumerate())


def test_stored_colour_maps_are_matplotlibs():
    with np.load(STORED_COLORMAPS) as stored:
        names = stored.files
    assert "magma" in names
    for name in names:
        np.testing.assert_array_equal(_colormap_table(name), matplotlib_colormap_table(name))
    np.testing.assert_array_equal(_colormap_table("cividis"), matplotlib_colormap_table("cividis"))  # not stored
