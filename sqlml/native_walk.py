"""The walk of native.py's perfect trees, compiled by numba (imported only to score).

Module-level functions, so that numba's on-disk cache finds them again in the next
process (a closure's cells would make every process's cache key new). Unsigned indices
throughout: numba adds a negative-index check to every signed index, which costs more than
the walk itself.
"""

from __future__ import annotations

from typing import Any

import numba
from numba import uintp

ROWS_PER_BLOCK = 256  # rows that walk every tree before the next rows start (fit in L1)


def _step(i: Any, x: Any, r: Any, offset: Any, threshold: Any, nodes: Any) -> Any:
    """The child of node i for row r: left, or right if the value > the threshold."""
    node = nodes + i
    return uintp(2) * i + uintp(1) + uintp(x[offset[node] + r] > threshold[node])


def _add(out: Any, o: Any, leaf: Any, at: Any, width: Any) -> None:
    for w in range(width):
        out[o + w] += leaf[at * width + w]


def _walk(
    x: Any, rows: Any, offset: Any, threshold: Any, leaf: Any, first: Any, depth: Any,
    width: Any, out: Any, outputs: Any,
) -> None:  # fmt: skip
    """Add each tree's leaf values to ``out`` (rows x outputs); ``x`` is the transposed
    float32 model matrix, the trees laid out as native.TreeArrays describes, with each
    node's feature given as where its row of ``x`` starts (feature x rows: a multiply less
    on every step, ~8% of the walk here)."""
    inner = (uintp(1) << depth) - uintp(1)
    n, k = rows, outputs
    for start in range(uintp(0), n, uintp(ROWS_PER_BLOCK)):
        stop = min(n, start + uintp(ROWS_PER_BLOCK))
        for t in range(uintp(first.size)):
            nodes, leaves, target = t * inner, t * (inner + uintp(1)) - inner, first[t]
            r = start
            while r + uintp(8) <= stop:  # eight rows at once: their loads overlap
                i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = uintp(0)
                for _ in range(depth):
                    i0 = step(i0, x, r, offset, threshold, nodes)
                    i1 = step(i1, x, r + uintp(1), offset, threshold, nodes)
                    i2 = step(i2, x, r + uintp(2), offset, threshold, nodes)
                    i3 = step(i3, x, r + uintp(3), offset, threshold, nodes)
                    i4 = step(i4, x, r + uintp(4), offset, threshold, nodes)
                    i5 = step(i5, x, r + uintp(5), offset, threshold, nodes)
                    i6 = step(i6, x, r + uintp(6), offset, threshold, nodes)
                    i7 = step(i7, x, r + uintp(7), offset, threshold, nodes)
                o = r * k + target
                add(out, o, leaf, leaves + i0, width)
                add(out, o + k, leaf, leaves + i1, width)
                add(out, o + uintp(2) * k, leaf, leaves + i2, width)
                add(out, o + uintp(3) * k, leaf, leaves + i3, width)
                add(out, o + uintp(4) * k, leaf, leaves + i4, width)
                add(out, o + uintp(5) * k, leaf, leaves + i5, width)
                add(out, o + uintp(6) * k, leaf, leaves + i6, width)
                add(out, o + uintp(7) * k, leaf, leaves + i7, width)
                r += uintp(8)
            while r < stop:
                i = uintp(0)
                for _ in range(depth):
                    i = step(i, x, r, offset, threshold, nodes)
                add(out, r * k + target, leaf, leaves + i, width)
                r += uintp(1)


def _compile(cache: bool) -> tuple[Any, Any, Any]:
    inline = numba.njit(nogil=True, cache=cache, inline="always")
    return inline(_step), inline(_add), numba.njit(nogil=True, cache=cache)(_walk)


try:
    step, add, walk = _compile(cache=True)
except RuntimeError:  # nowhere to write numba's cache: compiled in each process
    step, add, walk = _compile(cache=False)
