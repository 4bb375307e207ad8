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


def _leaf_of(x: Any, r: Any, offset: Any, threshold: Any, nodes: Any, depth: Any) -> Any:
    """The leaf (0 .. 2^depth - 1) row r reaches in the tree whose nodes start at nodes."""
    i = uintp(0)
    for _ in range(depth):
        i = step(i, x, r, offset, threshold, nodes)
    return i - ((uintp(1) << depth) - uintp(1))


def _leaves8(x: Any, r: Any, offset: Any, threshold: Any, nodes: Any, depth: Any) -> Any:
    """_leaf_of for rows r .. r + 7, walked together: their loads overlap."""
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
    inner = (uintp(1) << depth) - uintp(1)
    return (
        i0 - inner, i1 - inner, i2 - inner, i3 - inner,
        i4 - inner, i5 - inner, i6 - inner, i7 - inner,
    )  # fmt: skip


def _add(out: Any, o: Any, leaf: Any, at: Any, width: Any) -> None:
    for w in range(width):
        out[o + w] += leaf[at * width + w]


def _tree_single(
    x: Any, start: Any, stop: Any, offset: Any, threshold: Any, nodes: Any, depth: Any,
    leaf: Any, leaves: Any, out: Any, o: Any, k: Any,
) -> None:  # fmt: skip
    """One tree whose leaves hold one value, rows start .. stop - 1, into out[r * k + o]. A
    loop of its own: a loop over the leaf's values after the walk (_tree_wide) made the
    whole walk ~25% slower here (measured, benchmarks/README.md), and most ensembles add
    one value per tree."""
    r = start
    while r + uintp(8) <= stop:
        l0, l1, l2, l3, l4, l5, l6, l7 = leaves8(x, r, offset, threshold, nodes, depth)
        at = r * k + o
        out[at] += leaf[leaves + l0]
        out[at + k] += leaf[leaves + l1]
        out[at + uintp(2) * k] += leaf[leaves + l2]
        out[at + uintp(3) * k] += leaf[leaves + l3]
        out[at + uintp(4) * k] += leaf[leaves + l4]
        out[at + uintp(5) * k] += leaf[leaves + l5]
        out[at + uintp(6) * k] += leaf[leaves + l6]
        out[at + uintp(7) * k] += leaf[leaves + l7]
        r += uintp(8)
    while r < stop:
        out[r * k + o] += leaf[leaves + leaf_of(x, r, offset, threshold, nodes, depth)]
        r += uintp(1)


def _tree_wide(
    x: Any, start: Any, stop: Any, offset: Any, threshold: Any, nodes: Any, depth: Any,
    leaf: Any, leaves: Any, width: Any, out: Any, o: Any, k: Any,
) -> None:  # fmt: skip
    """One tree whose leaves hold ``width`` values (a forest's class probabilities)."""
    r = start
    while r + uintp(8) <= stop:
        l0, l1, l2, l3, l4, l5, l6, l7 = leaves8(x, r, offset, threshold, nodes, depth)
        at = r * k + o
        add(out, at, leaf, leaves + l0, width)
        add(out, at + k, leaf, leaves + l1, width)
        add(out, at + uintp(2) * k, leaf, leaves + l2, width)
        add(out, at + uintp(3) * k, leaf, leaves + l3, width)
        add(out, at + uintp(4) * k, leaf, leaves + l4, width)
        add(out, at + uintp(5) * k, leaf, leaves + l5, width)
        add(out, at + uintp(6) * k, leaf, leaves + l6, width)
        add(out, at + uintp(7) * k, leaf, leaves + l7, width)
        r += uintp(8)
    while r < stop:
        add(out, r * k + o, leaf, leaves + leaf_of(x, r, offset, threshold, nodes, depth), width)
        r += uintp(1)


def _walk(
    x: Any, rows: Any, offset: Any, threshold: Any, leaf: Any, first: Any, depth: Any,
    width: Any, out: Any, outputs: Any,
) -> None:  # fmt: skip
    """Add each tree's leaf values to ``out`` (rows x outputs); ``x`` is the transposed
    float32 model matrix, the trees laid out as native.TreeArrays describes, with each
    node's feature given as where its row of ``x`` starts (feature x rows: a multiply less
    on every step, ~8% of the walk here)."""
    inner = (uintp(1) << depth) - uintp(1)
    for start in range(uintp(0), rows, uintp(ROWS_PER_BLOCK)):
        stop = min(rows, start + uintp(ROWS_PER_BLOCK))
        for t in range(uintp(first.size)):
            nodes, leaves = t * inner, t * (inner + uintp(1))
            if width == uintp(1):
                tree_single(
                    x, start, stop, offset, threshold, nodes, depth, leaf, leaves, out,
                    first[t], outputs,
                )  # fmt: skip
            else:
                tree_wide(
                    x, start, stop, offset, threshold, nodes, depth, leaf, leaves, width,
                    out, first[t], outputs,
                )  # fmt: skip


def _compile(cache: bool) -> tuple[Any, ...]:
    # Inlined by numba, not left to LLVM: LLVM's inlining here gave a ~25% slower walk for
    # half the first compile on a machine (~4 s against ~8 s; measured once).
    inline = numba.njit(nogil=True, cache=cache, inline="always")
    return (
        *(inline(f) for f in (_step, _leaf_of, _leaves8, _add, _tree_single, _tree_wide)),
        numba.njit(nogil=True, cache=cache)(_walk),
    )


try:
    step, leaf_of, leaves8, add, tree_single, tree_wide, walk = _compile(cache=True)
except RuntimeError:  # nowhere to write numba's cache: compiled in each process
    step, leaf_of, leaves8, add, tree_single, tree_wide, walk = _compile(cache=False)
