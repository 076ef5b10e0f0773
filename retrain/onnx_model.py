"""ONNX side of recompression: convertibility, conversion, inference, int8, MLflow logging.

A model is a scikit-learn Pipeline whose first step is a ColumnTransformer over named
columns. skl2onnx turns it into one ONNX graph with one input per raw column, shaped
(N, 1): FloatTensorType for numerical columns, StringTensorType for categorical ones.
Classifiers are converted with zipmap=False: outputs are ``label`` (N,) and
``probabilities`` (N, K); regressors output ``variable`` (N, 1).

skl2onnx renames inputs whose column names are not identifiers (``mean radius`` becomes
``mean_radius``, ``1st score`` becomes ``_1st_score``), so an ONNX input name is never looked up in a
frame: the graph carries its input -> column map in its metadata (``driftd.input_columns``),
and every feed goes through it.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from sklearn.base import BaseEstimator, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

TARGET_OPSET = 17  # ai.onnx domain; onnxruntime >= 1.13 runs it
ML_OPSET = 3  # ai.onnx.ml domain (skl2onnx emits the lowest version each operator needs)
INPUT_COLUMNS = "driftd.input_columns"  # metadata key: JSON {onnx input name: frame column}
QUANTIZABLE_OPS = frozenset({"MatMul", "Gemm", "Conv", "Attention", "LSTM", "GRU"})
_QUANTIZED_OPS = frozenset({"MatMulInteger", "DynamicQuantizeMatMul", "QLinearMatMul", "ConvInteger"})


class NotQuantizable(Exception):
    """int8 dynamic quantization does not apply to this graph; the message says why."""


# --------------------------------------------------------------------------- conversion


def column_pipeline(estimator: BaseEstimator, numerical: Sequence[str], categorical: Sequence[str],
                    frame: pd.DataFrame) -> BaseEstimator:
    """Return ``estimator`` unchanged if it starts with a ColumnTransformer; else wrap a bare
    estimator fitted on the numerical columns behind a passthrough ColumnTransformer."""
    if _starts_with_columns(estimator) or categorical:
        return estimator
    columns = ColumnTransformer([("num", "passthrough", list(numerical))], verbose_feature_names_out=False)
    columns.set_output(transform="pandas").fit(frame[list(numerical)])  # keeps the names it was fitted with
    return Pipeline([("columns", columns), ("model", estimator)])


def check_convertible(estimator: BaseEstimator, numerical: Sequence[str],
                      categorical: Sequence[str]) -> str | None:
    """None if skl2onnx can convert ``estimator`` (fitted or not) with one input per column,
    else a reason a user can act on. Structural only: cheap enough to call before training."""
    from skl2onnx._supported_operators import sklearn_operator_name_map as supported

    if not _starts_with_columns(estimator) and categorical:
        return ("expected a Pipeline whose first step is a ColumnTransformer over the named "
                f"columns; got {type(estimator).__name__} with categorical columns")
    known = set(numerical) | set(categorical)
    for path, part, columns in _walk(estimator, None):
        name = type(part).__name__
        if isinstance(part, FunctionTransformer) and part.func is not None:
            return f"{path}: FunctionTransformer(func={getattr(part.func, '__name__', part.func)}) does not convert to ONNX (only the identity does)"
        if isinstance(part, SimpleImputer) and columns and set(columns) & set(categorical):
            return f"{path}: SimpleImputer on string columns {sorted(set(columns) & set(categorical))} does not convert to ONNX"
        if isinstance(columns, list) and columns and not set(map(str, columns)) <= known:
            return f"{path}: columns {sorted(set(map(str, columns)) - known)} are neither numerical nor categorical"
        if type(part) not in supported and not isinstance(part, (Pipeline, ColumnTransformer, FeatureUnion)):
            return f"{path}: skl2onnx has no converter for {name}"
    return None


def to_onnx_model(estimator: BaseEstimator, numerical: Sequence[str],
                  categorical: Sequence[str]) -> onnx.ModelProto:
    """Convert a fitted column pipeline; raises whatever skl2onnx raises."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    inputs = [(c, FloatTensorType([None, 1])) for c in numerical]
    inputs += [(c, StringTensorType([None, 1])) for c in categorical]
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    model = to_onnx(estimator, initial_types=inputs, options=options,
                    target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET})
    _map_inputs(model, [name for name, _ in inputs])
    _drop_unused_inputs(model)
    return model


def _map_inputs(model: onnx.ModelProto, columns: list[str]) -> None:
    """Record which frame column feeds each graph input (skl2onnx keeps the declared order)."""
    names = [i.name for i in model.graph.input]
    if len(names) != len(columns):
        raise ValueError(f"skl2onnx made {len(names)} inputs of {len(columns)} columns; cannot map them back")
    _set_metadata(model, INPUT_COLUMNS, json.dumps(dict(zip(names, columns)), ensure_ascii=False))


def _set_metadata(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value
            return
    model.metadata_props.add(key=key, value=value)


def quantize_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """int8 dynamic quantization (weights int8, activations quantized at run time).
    Raises NotQuantizable when the graph has nothing quantize_dynamic can shrink."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = {node.op_type for node in model.graph.node}
    if not ops & QUANTIZABLE_OPS:
        raise NotQuantizable(f"no MatMul/Gemm/Conv in the graph (operators: {', '.join(sorted(ops))}); "
                             "ONNX-ML tree/linear operators have nothing to quantize")
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "model.onnx"), Path(tmp, "model.int8.onnx")
        source.write_bytes(model.SerializeToString())
        try:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime versions differ in what they refuse
            raise NotQuantizable(f"quantize_dynamic raised {type(exc).__name__}: {exc}") from exc
        quantized = onnx.load_model_from_string(target.read_bytes())
    for prop in model.metadata_props:  # the input -> column map, above all
        _set_metadata(quantized, prop.key, prop.value)
    if not {node.op_type for node in quantized.graph.node} & _QUANTIZED_OPS:
        raise NotQuantizable("quantize_dynamic left every operator in float")
    return quantized


def _starts_with_columns(estimator: BaseEstimator) -> bool:
    return isinstance(estimator, Pipeline) and isinstance(estimator.steps[0][1], ColumnTransformer)


def _walk(part: Any, columns: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """(path, estimator, columns it sees) for every node of a pipeline tree."""
    path = f"{path}/{type(part).__name__}" if path else type(part).__name__
    found = [(path, part, columns)]
    if isinstance(part, Pipeline):
        for name, step in part.steps:
            if step not in (None, "passthrough"):
                found += _walk(step, columns, f"{path}[{name}]")
    elif isinstance(part, ColumnTransformer):
        specs = getattr(part, "transformers_", part.transformers)
        for name, trans, cols in specs:
            if not isinstance(trans, str):
                cols = list(cols) if isinstance(cols, (list, tuple, np.ndarray, pd.Index)) else cols
                found += _walk(trans, cols, f"{path}[{name}]")
    elif isinstance(part, FeatureUnion):
        for name, trans in part.transformer_list:
            if not isinstance(trans, str):
                found += _walk(trans, columns, f"{path}[{name}]")
    return found


def _drop_unused_inputs(model: onnx.ModelProto) -> None:
    """skl2onnx keeps declared inputs no node reads; onnxruntime would then demand them."""
    used = {name for node in model.graph.node for name in node.input}
    for graph_input in [i for i in model.graph.input if i.name not in used]:
        model.graph.input.remove(graph_input)


# --------------------------------------------------------------------------- inference


def column_feed(series: pd.Series, onnx_type: str) -> np.ndarray:
    """One raw DataFrame column as an (N, 1) ONNX tensor. Missing strings become ""
    (an unknown category, ignored by OneHotEncoder(handle_unknown="ignore"))."""
    if onnx_type == "tensor(string)":
        values = series.astype(object).where(series.notna(), "").to_numpy(dtype=object)
        return np.array([str(v) for v in values], dtype=object).reshape(-1, 1)
    if onnx_type == "tensor(int64)":
        return series.to_numpy(dtype=np.int64).reshape(-1, 1)
    dtype = {"tensor(float)": np.float32, "tensor(double)": np.float64}[onnx_type]
    return series.to_numpy(dtype=dtype, na_value=np.nan).reshape(-1, 1)


def session(model: onnx.ModelProto | bytes, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def input_columns(sess: ort.InferenceSession) -> dict[str, str]:
    """The frame column feeding each graph input (identity for graphs without the map)."""
    mapped = json.loads(sess.get_modelmeta().custom_metadata_map.get(INPUT_COLUMNS, "{}"))
    return {i.name: mapped.get(i.name, i.name) for i in sess.get_inputs()}


def feeds(sess: ort.InferenceSession, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    columns = input_columns(sess)
    missing = [c for c in columns.values() if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks model input columns {missing}")
    return {i.name: column_feed(frame[columns[i.name]], i.type) for i in sess.get_inputs()}


def run(sess: ort.InferenceSession, feed: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    outputs = sess.run(None, feed)
    probabilities = np.asarray(outputs[1]) if len(outputs) > 1 else None
    return np.asarray(outputs[0]).reshape(-1), probabilities


def onnx_predict(model: onnx.ModelProto | bytes, frame: pd.DataFrame, numerical: Sequence[str],
                 categorical: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels (or regression values) and class probabilities (None for regressors)."""
    missing = [c for c in [*numerical, *categorical] if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks columns {missing}")
    sess = session(model)
    return run(sess, feeds(sess, frame))


# --------------------------------------------------------------------------- MLflow

# mlflow.onnx's pyfunc feeds a DataFrame column as a 1-D array (rank error against the
# (N, 1) inputs), hands pandas' Arrow-backed strings to onnxruntime as-is, and flattens the
# (N, K) probabilities into a column of length N*K. This models-from-code wrapper (stored
# with the model, no driftd import at load time) feeds each column as (N, 1) instead.
_PYFUNC_TEMPLATE = '''"""driftd: serve a multi-input (N, 1) ONNX model from a DataFrame of raw columns."""
import json

import mlflow
import numpy as np
import onnxruntime as ort
import pandas as pd


{column_feed}

class OnnxFrameModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.session = ort.InferenceSession(context.artifacts["onnx_model"], providers=["CPUExecutionProvider"])
        self.classes = (context.model_config or {{}}).get("classes")
        # ONNX input names are sanitised column names ("mean radius" -> "mean_radius"): map them back.
        mapped = json.loads(self.session.get_modelmeta().custom_metadata_map.get("{input_columns}", "{{}}"))
        self.columns = {{i.name: mapped.get(i.name, i.name) for i in self.session.get_inputs()}}

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        feed = {{i.name: column_feed(frame[self.columns[i.name]], i.type) for i in self.session.get_inputs()}}
        outputs = self.session.run(None, feed)
        result = pd.DataFrame({{"prediction": np.asarray(outputs[0]).reshape(-1)}}, index=frame.index)
        if self.classes is not None and len(outputs) > 1:
            for k, label in enumerate(self.classes):
                result[f"proba_{{label}}"] = np.asarray(outputs[1])[:, k]
        return result


mlflow.models.set_model(OnnxFrameModel())
'''


def log_onnx_model(result: Any, name: str, numerical: Sequence[str], categorical: Sequence[str],
                   input_example: pd.DataFrame, **log_kwargs: Any) -> Any:
    """Log ``result.onnx_model`` (a CompressionResult) as a pyfunc that predicts from a
    DataFrame of raw columns: columns ``prediction`` and, for classifiers, ``proba_<class>``.
    The .onnx file is an artifact of the model (``artifacts/model.onnx``) for direct serving.
    Extra keyword arguments go to ``mlflow.pyfunc.log_model`` (e.g. registered_model_name)."""
    import mlflow

    if result.onnx_model is None:
        raise ValueError(f"nothing to log: {result.reason}")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path, code_path = Path(tmp, "model.onnx"), Path(tmp, "driftd_onnx_pyfunc.py")
        onnx_path.write_bytes(result.onnx_model.SerializeToString())
        code_path.write_text(_PYFUNC_TEMPLATE.format(column_feed=inspect.getsource(column_feed), input_columns=INPUT_COLUMNS))
        classes = None if result.classes is None else np.asarray(result.classes).tolist()
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(code_path), artifacts={"onnx_model": str(onnx_path)},
            model_config={"classes": classes}, input_example=_example(input_example, numerical, categorical),
            pip_requirements=_requirements(),
            metadata={"driftd.compression": result.chosen.name, "onnx_target_opset": result.target_opset},
            **log_kwargs)


def _example(frame: pd.DataFrame, numerical: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """Five rows typed as the graph sees them, so the inferred signature says double/string."""
    example = frame[[*numerical, *categorical]].head(5).copy()
    example[list(numerical)] = example[list(numerical)].astype("float64")
    for column in categorical:
        example[column] = example[column].astype(object).where(example[column].notna(), "").astype(str)
    return example


def _requirements() -> list[str]:
    import mlflow

    return [f"mlflow=={mlflow.__version__}", f"onnxruntime=={ort.__version__}",
            f"onnx=={onnx.__version__}", f"pandas=={pd.__version__}", f"numpy=={np.__version__}"]
