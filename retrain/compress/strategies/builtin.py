"""The built-in strategies as the `driftd.compressors` registry names them: `onnx` (the plain
conversion), `prune` (fewer trees, stages or input columns) and `quantize` (int8 weights)."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.base import BaseEstimator

from retrain.compress.strategies.prune import _prune
from retrain.compress.variants import BuildRows, CompressionStrategy, Skipped


class PlainConversion(CompressionStrategy):
    """`onnx`: the whole model converted as it is; always a candidate, so nothing to add here."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return []


class Pruning(CompressionStrategy):
    """`prune`: fewer trees, stages or input columns, by model family (retrain.compress.strategies.prune)."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return _prune(build)


class Int8Quantization(CompressionStrategy):
    """`quantize`: int8 weights of the converted graph; it works on the ONNX graph, so compress()
    applies it after conversion rather than through candidates()."""

    def candidates(self, build: BuildRows) -> Sequence[tuple[str, BaseEstimator, str] | Skipped]:
        return []
