"""Tree ensembles scored by machine code: the ``inference = 'native'`` path.

onnxruntime and scikit-learn walk a tree node by node with a branch per node; on the
random-looking paths of real rows most of those branches are mispredicted, and the walk
costs ~35 ns per tree and row. Here every tree is laid out as a *perfect* binary tree of
the ensemble's depth (a shallower leaf is padded with nodes that always go left), so that
the child of node ``i`` is ``2i + 1 + (x > threshold)``: no branch, no child pointers. Eight
rows walk the same tree at once, so the CPU overlaps their memory loads. numba compiles
the loop to machine code once per machine (cached) and releases the GIL while it runs, so
DuckDB's threads score in parallel.

The inputs are exactly what the ONNX graph's trees see (the model matrix in float32, NaN
replaced by the training means; the thresholds rounded to float32 as skl2onnx stores
them), and the raw scores go through the same links as the compiled SQL (compiler.py), so
the outputs equal onnxruntime's up to the float32 sums onnxruntime keeps. CREATE MODEL
checks that on the parity rows before choosing this path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from sqlml import compiler
from sqlml.catalog import ModelRecord
from sqlml.families import CLASSIFICATION
from sqlml.features import CATEGORICAL, NUMERIC, category_codes, encode, numeric_values
from sqlml.runtime import ModelRuntime, number_lists

# A perfect tree of depth d has 2^d leaves: deeper ensembles (random forests' default
# depth is 20) stay with onnxruntime, whose node arrays grow with the tree, not its depth.
MAX_DEPTH = 12
MAX_PADDED_VALUES = 1 << 23  # trees x 2^depth x values per leaf (64 MiB of float64)


def depth(tree: Mapping[str, Any]) -> int:
    """The depth of a tree given as arrays (families/trees.tree_parameters)."""
    deepest, stack = 0, [(0, 0)]
    while stack:
        node, level = stack.pop()
        if tree["leaf"][node]:
            deepest = max(deepest, level)
        else:
            stack += [(tree["left"][node], level + 1), (tree["right"][node], level + 1)]
    return deepest


def available() -> bool:
    """Whether numba can be imported (and the walk compiled) here."""
    try:
        kernel()
    except ImportError:
        return False
    return True


def why_not(parameters: Mapping[str, Any] | None) -> str | None:
    """Why these tree parameters cannot be scored natively; None when they can."""
    if not available():
        return "numba, which compiles the native scorer, cannot be imported"
    if not parameters or not parameters.get("trees"):
        return "the model keeps no tree parameters"
    trees = parameters["trees"]
    deepest = max(depth(t) for t in trees)
    if deepest > MAX_DEPTH:
        return (
            f"its trees are {deepest} levels deep; the native scorer takes up to {MAX_DEPTH} "
            "(set max_tree_depth lower)"
        )
    width = max(len(t["outputs"]) for t in trees)
    if len(trees) * (1 << deepest) * width > MAX_PADDED_VALUES:
        return "the ensemble is too large for the native scorer's padded trees"
    return None


class TreeArrays:
    """An ensemble as perfect trees: per tree, ``2^depth - 1`` (feature, threshold) pairs in
    breadth-first order, then ``2^depth`` leaves of ``width`` values each, added to the
    raw scores ``first .. first + width - 1``."""

    def __init__(self, parameters: Mapping[str, Any]):
        trees = parameters["trees"]
        self.depth = max(depth(t) for t in trees)
        self.width = max(len(t["outputs"]) for t in trees)
        self.outputs = len(parameters["base"])
        inner, leaves = (1 << self.depth) - 1, 1 << self.depth
        count = len(trees)
        self.feature = np.zeros((count, inner), np.uintp)
        # Padding nodes compare with +inf: every value goes left, to the copied leaf.
        exact = np.full((count, inner), np.inf, np.float64)
        self.leaf = np.zeros((count, leaves, self.width), np.float64)
        self.first = np.zeros(count, np.uintp)
        for t, tree in enumerate(trees):
            outputs = tree["outputs"]
            if outputs != list(range(outputs[0], outputs[0] + len(outputs))):
                raise ValueError("tree outputs must be consecutive")
            self.first[t] = outputs[0]
            stack = [(0, 0)]  # (node in the tree, position in the perfect tree)
            while stack:
                node, position = stack.pop()
                if tree["leaf"][node]:
                    while position < inner:  # the leftmost leaf below a padded leaf
                        position = 2 * position + 1
                    self.leaf[t, position - inner, : len(outputs)] = tree["value"][node]
                    continue
                self.feature[t, position] = tree["feature"][node]
                exact[t, position] = tree["threshold"][node]
                stack.append((tree["left"][node], 2 * position + 1))
                stack.append((tree["right"][node], 2 * position + 2))
        # Compared as skl2onnx stores them, so that every comparison matches onnxruntime's:
        # as float32, rounded to nearest or (decision trees) down.
        self.threshold = exact.astype(np.float32)
        if parameters.get("float32_thresholds") == "down":
            above = self.threshold > exact
            self.threshold[above] = np.nextafter(self.threshold[above], np.float32(-np.inf))
        self.base = np.asarray(parameters["base"], np.float64)
        self.scale = float(parameters["scale"])

    def raw(self, x: np.ndarray) -> np.ndarray:
        """(rows, outputs) raw scores of the model matrix ``x``, transposed: a row of
        float32 values per model column."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        rows = x.shape[1]
        out = np.zeros((rows, self.outputs), np.float64)
        if rows:
            kernel()(
                x.reshape(-1),
                np.uintp(rows),
                (self.feature * np.uintp(rows)).reshape(-1),
                self.threshold.reshape(-1),
                self.leaf.reshape(-1),
                self.first,
                np.uintp(self.depth),
                np.uintp(self.width),
                out.reshape(-1),
                np.uintp(self.outputs),
            )
        return self.base + self.scale * out


_kernel: Callable[..., None] | None = None
_missing: ImportError | None = None
_warming = False
_compiling = threading.Lock()


def kernel() -> Callable[..., None]:
    """The compiled walk (native_walk: numba is imported, and the walk compiled or read
    from numba's cache, on first use). Where numba cannot be imported, the ImportError,
    remembered: it is asked for on every DuckDB vector, and a failed import is retried."""
    global _kernel, _missing
    if _kernel is None:
        with _compiling:
            if _missing is not None:
                raise _missing
            if _kernel is None:
                try:
                    from sqlml.native_walk import walk
                except ImportError as error:
                    _missing = error
                    raise
                _kernel = walk
    return _kernel


def warm() -> None:
    """Import numba and load (or compile) the walk in the background, so that the first
    query scoring a native model does not wait for it (a second; several the first time on
    a machine, before numba's cache exists). Not a daemon: an interpreter that exits early
    waits for the import rather than killing it half done."""
    global _warming
    with _compiling:
        if _kernel is not None or _warming:
            return
        _warming = True
    threading.Thread(target=_load, name="sqlml-native-warm").start()


# A tree that is one leaf: what the warm-up scores, through the same call as every model.
_ONE_LEAF = {
    "trees": [
        {"feature": [-2], "threshold": [0.0], "left": [-1], "right": [-1], "leaf": [True],
         "value": [[0.0]], "outputs": [0]}
    ],
    "base": [0.0], "scale": 1.0, "link": None,
}  # fmt: skip


def _load() -> None:
    """Import the walk and score one row with it: numba compiles a function (or reads it
    from its cache) at its first call, not at its import."""
    if available():
        TreeArrays(_ONE_LEAF).raw(np.zeros((0, 1), np.float32))  # no features, one row


class NativeRuntime(ModelRuntime):
    """Scores a tree ensemble with :class:`TreeArrays`; the same outputs, by role, as the
    ONNX graph (runtime.ModelRuntime), so ML.PREDICT, ML.EVALUATE and the model functions
    use it unchanged. The ONNX session is not created."""

    def __init__(self, record: ModelRecord, load: Callable[[], bytes] | None = None):
        super().__init__(record, load or _no_onnx)
        warm()
        self.trees = TreeArrays(record.metadata["parameters"])
        self._link = record.metadata["parameters"]["link"]
        # Where each feature's block starts, and the mean replacing NaN in each column.
        self._positions = np.cumsum([0] + [f.width for f in record.features]).tolist()
        means = [f.means if f.kind != CATEGORICAL else [0.0] * f.width for f in record.features]
        self._means = np.asarray([m for block in means for m in block], np.float32)[:, None]

    def _matrix(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> np.ndarray:
        """The model matrix of one DuckDB vector, transposed (a row per column: each is
        written contiguously), in float32, and one scratch row more for unseen categories.
        Plain numeric columns are copied as they are, NaN replaced by the means in one pass
        over the matrix, categories one-hot from the codes the ONNX graph is fed (the
        per-feature calls of features.matrix cost more than the walk of a small ensemble)."""
        rows, width = len(columns[0]), self._positions[-1]
        x = np.empty((width + 1, rows), np.float32)
        for i, (feature, column) in enumerate(zip(self.record.features, columns, strict=True)):
            start, stop = self._positions[i], self._positions[i + 1]
            categories = self._categories.get(feature.name)
            if categories is not None:
                codes = category_codes(column, categories)  # -1: unseen, to the scratch row
                x[start:stop] = 0.0
                x[np.where(codes >= 0, start + codes, width), np.arange(rows)] = 1.0
                continue
            # Beyond float32's range a value becomes +-infinity, as in the ONNX graph's
            # Cast: intended, not worth a warning.
            with np.errstate(over="ignore"):
                if feature.kind == NUMERIC and feature.scales is None:
                    x[start] = numeric_values(column)
                else:
                    x[start:stop] = encode(feature, column).T
        np.copyto(x[:width], self._means, where=np.isnan(x[:width]))
        return x[:width]

    def raw_array(self, *columns: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The raw scores as Arrow (ML.PREDICT's SQL computes the outputs from them): a
        DOUBLE per row, or a list of one per output."""
        if not available():  # the same raw scores, from the ONNX graph's outputs
            raw = _raw_from(self.run(columns), self._link, self.trees.outputs)
        else:
            raw = self.trees.raw(self._matrix(columns))
        return pa.array(raw[:, 0], pa.float64()) if raw.shape[1] == 1 else number_lists(raw)

    def _run(self, columns: Sequence[pa.Array | pa.ChunkedArray]) -> dict[str, np.ndarray]:
        if not available():  # a file opened where numba is missing: the same model in ONNX
            return super()._run(columns)
        raw = self.trees.raw(self._matrix(columns))
        if self.record.task != CLASSIFICATION:
            return {"prediction": raw[:, 0]}
        probabilities = _probabilities(raw, self._link)
        if self._link == compiler.LOGIT:  # argmax of two columns, in one comparison
            label = (probabilities[:, 1] > probabilities[:, 0]).astype(np.int64)
        else:
            label = np.argmax(probabilities, axis=1)
        return {"label": label, "probabilities": probabilities}


def _raw_from(outputs: dict[str, np.ndarray], link: str | None, count: int) -> np.ndarray:
    """Raw scores that give these outputs through ``link`` (the inverse of _probabilities;
    softmax scores up to a constant, which softmax ignores)."""
    if "prediction" in outputs:
        return outputs["prediction"].reshape(-1, 1)
    p = outputs["probabilities"]
    with np.errstate(divide="ignore"):  # a probability of 0: a score of -inf, as it is
        if link == compiler.LOGIT:
            return np.log(p[:, 1:2]) - np.log(p[:, 0:1])
        if link == compiler.SOFTMAX:
            return np.log(p)
    return p.reshape(-1, count)


def _no_onnx() -> bytes:
    raise AssertionError("the native scorer does not run the ONNX graph")


def _probabilities(raw: np.ndarray, link: str | None) -> np.ndarray:
    """The links of compiler.CompiledModel.probabilities, for tree ensembles."""
    if link == compiler.LOGIT:
        probabilities = np.empty((len(raw), 2))
        probabilities[:, 1] = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        np.subtract(1.0, probabilities[:, 1], out=probabilities[:, 0])
        return probabilities
    if link == compiler.SOFTMAX:
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if link == compiler.PROBABILITIES:
        return raw
    raise ValueError(f"no native link {link!r}")
