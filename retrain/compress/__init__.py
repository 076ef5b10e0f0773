"""Recompression stage of the retrain pipeline.

The package: variants.py (what is produced and the strategy interface), select.py (the
selection core: `compress`), measure.py (scoring a candidate natively or as a graph),
strategies/ (the built-in `onnx`, `prune` and `quantize`).

``compress`` turns a fitted scikit-learn model into measured ONNX variants and CHOOSES the
one to serve using VALIDATION rows only. It never sees the gate's holdout: the choice is
tested afterwards, once, on rows it was not made on (``retrain.evaluate.gate_compression``).
A variant chosen on the holdout and gated on the same holdout could not fail its gate.

The validation rows are split in two seeded halves (``selection_split``):
- BUILD: what pruning decisions are fitted on (greedy tree order, stage and column curves);
- SELECT: every variant is measured there (quality on the model's primary metric, agreement
  with the sklearn model, latency); the chosen variant is the smallest whose upper confidence
  bound of loss against the uncompressed model (paired bootstrap, ``retrain.bounds``) stays
  within ``max_quality_loss``. Greedy selection overfits the rows it ran on (FACTS: validation
  -0.04 pt, test -1.8 pt), so the rows that judge a ladder are not the rows that built it.

Candidates are scored NATIVELY: every candidate that is a scikit-learn model (the plain model,
every pruned one) is measured on the SELECT rows with sklearn's own predictions, which is what
its ONNX graph must reproduce anyway. Only then are the passing candidates converted, smallest
first (by pickled size, the native measure of a model's size), and the first whose graph agrees
with its sklearn source (``FIDELITY``) and keeps the loss bound on its own ONNX predictions is
chosen; its size and latency are measured on the graph. Converting every candidate cost ~30 s
of a RandomForest(100)'s retrain (skl2onnx builds tree nodes in Python). The plain conversion,
the gate's lossless fallback, is built only when it is needed: when it is chosen, when int8
quantization needs it, or lazily through ``CompressionResult.with_lossless``.

Strategies, by model family (every served variant is an ONNX graph):
- ``onnx``: skl2onnx conversion of the whole pipeline, checked against sklearn. When it
  agrees with the sklearn model it is *lossless*: it may serve whatever the holdout size.
- ``prune``: forests -> greedy forward selection of trees, optionally after cost-complexity
  pruning of every tree; boosting -> fewer stages; linear models -> drop the input columns
  whose coefficients are smallest (zeroed coefficients alone would not shrink a dense ONNX
  tensor). Each family offers a ladder of candidates: the smallest model within 0, 1/4 and
  1/2 of the loss budget on the BUILD rows, and for trees and stages also 1/2 and 1/4 of
  them (rungs that do not lean on a curve the greedy order overfits).
- ``quantize``: onnxruntime int8 dynamic quantization where the graph has MatMul/Gemm
  (MLPs); tree and linear ONNX-ML graphs are skipped with the reason.
"""

from retrain.compress.select import compress, selection_split

# The built-in strategies, by the import path the registry names them with (monitor.core.plugins).
from retrain.compress.strategies.builtin import Int8Quantization, PlainConversion, Pruning
from retrain.compress.variants import STRATEGIES, TASKS, BuildRows, CompressionResult, CompressionStrategy, Skipped, Variant
from retrain.onnx_model import check_convertible, log_onnx_model, onnx_predict

__all__ = ["Variant", "Skipped", "CompressionResult", "CompressionStrategy", "BuildRows", "compress", "selection_split",
           "check_convertible", "onnx_predict", "log_onnx_model", "TASKS", "STRATEGIES", "PlainConversion", "Pruning",
           "Int8Quantization"]
