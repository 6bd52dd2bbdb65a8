"""Spans of flash: which overlap, and where the first free aligned space is.

One routine for every place that lays things out in flash: the board's AT partitions, the
files of a factory image, the regions of a flash map.
"""
from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

T = TypeVar("T")


def overlaps(spans: Iterable[Tuple[int, int, T]]) -> Iterator[Tuple[T, T]]:
    """(later, earlier) for every span (start, end, item) that starts inside an earlier one.

    Spans are taken in (start, end) order; ``earlier`` is, of the spans before, the one
    reaching furthest, since a big span may cover several small ones.  Every span that
    overlaps another appears in at least one pair.
    """
    furthest = None
    for start, end, item in sorted(spans, key=lambda s: (s[0], s[1])):
        if furthest is not None and start < furthest[1]:
            yield item, furthest[2]
        if furthest is None or end > furthest[1]:
            furthest = (start, end, item)


def first_free(taken: Sequence[Tuple[int, int]], lo: int, hi: int, size: int, align: int) -> Optional[int]:
    """The lowest ``align``-aligned offset in [lo, hi) where ``size`` bytes touch no taken span."""
    candidate = (lo + align - 1) // align * align
    for start, end in sorted(taken):
        if candidate + size <= start:
            break
        if end > candidate:
            candidate = (end + align - 1) // align * align
    return candidate if candidate + size <= hi else None


def overlapping(spans: Iterable[Tuple[int, int, T]]) -> List[T]:
    """Every item whose span overlaps another's."""
    found: List[T] = []
    for later, earlier in overlaps(spans):
        for item in (later, earlier):
            if not any(item is f for f in found):
                found.append(item)
    return found
