"""Confidence-based performance estimation (CBPE): a classifier's accuracy, f1 and roc_auc on a
window whose labels have not arrived, from the model's own scores calibrated on the reference.

If the calibrated score p_i is the probability that row i is positive, every metric's
expectation follows from the p_i alone: accuracy = mean of p_i (predicted positive) or 1 - p_i;
f1 = 2·E[TP] / (E[positives] + predicted positives); roc_auc = the p_i(1 - p_j)-weighted share
of ordered pairs (i ranked above j by the raw score). The band is where the realized metric
falls when each label is drawn from its p_i (Monte Carlo, `draws` label sets): it narrows as
the window grows, and as labels arrive (a known label counts as it is).

Assumptions, and what breaks them (bench/estimation.py measures both):
- P(y | score) is the same in the window as in the reference. Covariate shift keeps it when
  the score orders rows as P(y | x) does; concept shift (P(y | x) itself changes) breaks it and
  the estimate is then wrong by about as much as the model got worse — `estimation_errors`
  (monitor/check/estimation.py) shows it once labels arrive.
- The reference rows are not the rows the model was trained on (training rows look more
  certain than they are): calibrate on validation/holdout rows.

Inputs are the logged columns only: the prediction, and the probability either as one column
(binary: P(larger label); multiclass: the predicted class's confidence, which gives accuracy
only) or as one column per class.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from monitor.check.calibration import Calibrator, CalibratorKind, fit_calibrator
from monitor.check.cbpe_metrics import Mode, auc_of_labels, expected_auc, f1_from, macro_auc, macro_f1, metric_draws, midranks
from monitor.check.estimation import EstimatorError, QualityEstimator
from monitor.core.results import Estimate, EstimatedQuality

DRAWS = 400
RESAMPLES = 20
BAND_ROWS = 20_000  # the band is computed on at most this many rows (a seeded sample; widths rescaled)
_FORMAT = 1


@dataclass(frozen=True)
class CBPE(QualityEstimator):
    """A fitted estimator; `fit_cbpe` builds it, `estimate` applies it to a window."""

    kind: ClassVar[str] = "cbpe"
    filename: ClassVar[str] = "cbpe.json"

    mode: Mode
    classes: tuple[Any, ...]
    prediction: str
    probability: str | tuple[tuple[Any, str], ...]  # one column, or (class, column) per class
    target: str | None
    calibrators: tuple[Calibrator, ...]  # binary/confidence: one; multiclass: one per class
    positive: Any = None  # binary: the class the probability and f1 refer to
    reference_rows: int = 0
    reference_quality: Mapping[str, float] = field(default_factory=dict)
    # the same calibrators fitted on bootstrap resamples of the reference: how much the
    # estimate would move with another reference of the same size (part of the band)
    resampled: tuple[tuple[Calibrator, ...], ...] = ()

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("accuracy",) if self.mode == "confidence" else ("accuracy", "f1", "roc_auc")

    # --- applying ------------------------------------------------------------------------

    def estimate(self, window: pd.DataFrame, *, use_labels: bool = True, confidence: float = 0.95, seed: int = 0, draws: int = DRAWS) -> EstimatedQuality:
        rows = self._rows(window, labels=use_labels)
        if rows.n == 0:
            raise EstimatorError(f"no row of the window has a usable {self.prediction!r} and probability; nothing to estimate")
        outcome = _Outcomes(self, rows, self._calibrated(rows.scores, self.calibrators))
        values = outcome.expected()
        rng = np.random.default_rng(seed)
        # the band's parts need no more than BAND_ROWS rows: label noise is rescaled to the
        # window's size, and the calibrators' spread is a systematic error that does not shrink
        sample = rows.where(np.sort(rng.choice(rows.n, BAND_ROWS, replace=False))) if rows.n > BAND_ROWS else rows
        spread = [_Outcomes(self, sample, self._calibrated(sample.scores, c)).expected() for c in self.resampled]
        bands = outcome.bands(confidence, draws, rng, spread)
        labelled = int(rows.known.sum())
        estimates = tuple(
            Estimate(metric, values[metric], *bands[metric], confidence=confidence, rows=rows.n, labelled_rows=labelled)
            for metric in self.metrics
        )
        return EstimatedQuality("cbpe", estimates, rows.n, rows.skipped)

    def realized(self, labelled: pd.DataFrame) -> dict[str, float]:
        rows = self._rows(labelled, labels=True)
        keep = rows.known
        truth, predicted, scores = rows.truth[keep], rows.predicted[keep], rows.scores[keep]
        if truth.size == 0:
            return {}
        values = {"accuracy": float(np.mean(truth == predicted))}
        if self.mode == "binary":  # the positive class is classes[1]
            y = (truth == 1).astype(np.float64)
            values["f1"] = f1_from(float(y @ (predicted == 1)), float(y.sum()), float((predicted == 1).sum()))
            values["roc_auc"] = auc_of_labels(y, midranks(scores))
        elif self.mode == "multiclass":
            onehot = np.eye(len(self.classes))[truth]
            values["f1"] = macro_f1(onehot, predicted, present=np.union1d(truth, predicted))
            values["roc_auc"] = macro_auc(onehot, scores)
        return values

    # --- persistence -----------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        data = {
            "format": _FORMAT,
            "kind": self.kind,
            "mode": self.mode,
            "classes": list(self.classes),
            "prediction": self.prediction,
            "probability": self.probability if isinstance(self.probability, str) else [list(p) for p in self.probability],
            "target": self.target,
            "calibrators": [c.to_json() for c in self.calibrators],
            "positive": self.positive,
            "reference_rows": self.reference_rows,
            "reference_quality": dict(self.reference_quality),
            "resampled": [[c.to_json() for c in cs] for cs in self.resampled],
        }
        return json.dumps(data, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> CBPE:
        try:
            raw = json.loads(data)
            if raw.get("kind") != cls.kind or raw.get("format") != _FORMAT:
                raise ValueError(f"kind {raw.get('kind')!r} format {raw.get('format')!r}")
            probability = raw["probability"]
            return cls(
                mode=raw["mode"],
                classes=tuple(raw["classes"]),
                prediction=raw["prediction"],
                probability=probability if isinstance(probability, str) else tuple((c, col) for c, col in probability),
                target=raw["target"],
                calibrators=tuple(Calibrator.from_json(c) for c in raw["calibrators"]),
                positive=raw["positive"],
                reference_rows=int(raw["reference_rows"]),
                reference_quality=dict(raw["reference_quality"]),
                resampled=tuple(tuple(Calibrator.from_json(c) for c in cs) for cs in raw["resampled"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise EstimatorError(f"not a CBPE estimator file written by this driftd ({exc}); refit it from the version's reference") from None

    # --- helpers -------------------------------------------------------------------------

    def _rows(self, frame: pd.DataFrame, *, labels: bool) -> _Rows:
        columns = [self.prediction] + ([self.probability] if isinstance(self.probability, str) else [c for _, c in self.probability])
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise EstimatorError(f"the window lacks columns {missing}, which CBPE reads; log the prediction and its probabilities")
        predicted = _class_index(frame[self.prediction], self.classes)
        scores = _scores(frame, self.probability)
        unknown = predicted == -2
        if unknown.any():
            odd = frame[self.prediction][unknown].unique()[:5].tolist()
            raise EstimatorError(f"predictions {odd} are not among the reference's classes {list(self.classes)}; "
                                 "refit the estimator on a reference that has them")
        usable = (predicted >= 0) & np.isfinite(scores).all(axis=1)
        _check_probabilities(scores[usable], self.probability)
        if self.target is not None and labels and self.target in frame.columns:
            truth = _class_index(frame[self.target], self.classes)
            truth[truth == -2] = -1  # a label the reference never saw cannot be scored: treated as unknown
        else:
            truth = np.full(len(frame), -1)
        return _Rows(predicted[usable], scores[usable], truth[usable], int((~usable).sum()))

    def _calibrated(self, scores: np.ndarray, calibrators: tuple[Calibrator, ...]) -> np.ndarray:
        """binary/confidence: P(positive)/P(correct) per row; multiclass: rows of P(class)."""
        if self.mode != "multiclass":
            return calibrators[0].apply(scores[:, 0])
        p = np.column_stack([c.apply(scores[:, k]) for k, c in enumerate(calibrators)])
        total = p.sum(axis=1, keepdims=True)
        uniform = np.full_like(p, 1.0 / p.shape[1])
        return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


def fit_cbpe(
    reference: pd.DataFrame,
    *,
    prediction: str,
    probability: str | Mapping[Any, str],
    target: str,
    classes: list[Any] | None = None,
    calibrator: CalibratorKind = "auto",
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> CBPE:
    """Calibrate the champion's scores on its labelled reference (validation rows, not training rows).

    `probability`: one column (binary: P(larger class); more classes: the predicted class's
    confidence, for accuracy only) or a mapping class -> column. `classes` defaults to the
    labels found in the target and prediction columns (and the mapping), sorted. `resamples`
    bootstrap refits of the calibrator measure the reference's own sampling error, which the
    band includes.
    """
    for column in [prediction, target] + ([probability] if isinstance(probability, str) else list(probability.values())):
        if column not in reference.columns:
            raise EstimatorError(f"the reference lacks column {column!r}; CBPE needs the prediction, probability and target of every reference row")
    labelled = reference[reference[target].notna() & reference[prediction].notna()]
    if classes is None:
        found = pd.concat([labelled[target], labelled[prediction]], ignore_index=True).dropna().unique().tolist()
        if not isinstance(probability, str):
            found += list(probability)
        classes = _sorted_labels(found)
    classes_t = tuple(_plain(c) for c in classes)
    if len(classes_t) < 2:
        raise EstimatorError(f"the reference's {target!r} holds one class {list(classes_t)}; CBPE needs at least two")
    spec: str | tuple[tuple[Any, str], ...] = probability if isinstance(probability, str) else tuple((_plain(c), probability[c]) for c in probability)
    if isinstance(spec, tuple):
        named = set(c for c, _ in spec)
        if len(classes_t) > 2 and named != set(classes_t):
            raise EstimatorError(f"probability columns name classes {sorted(map(str, named))} "
                                 f"but the classes are {list(classes_t)}; map every class to its column")
    mode: Mode = "binary" if len(classes_t) == 2 else ("confidence" if isinstance(spec, str) else "multiclass")
    if mode == "binary" and isinstance(spec, tuple):
        positive = dict(spec).get(classes_t[1])  # one column is enough: P(positive)
        if positive is None:
            raise EstimatorError(f"probability columns name no column for the positive class {classes_t[1]!r}; map it to P({classes_t[1]!r})")
        spec = positive
    draft = CBPE(mode, classes_t, prediction, spec, target, (), classes_t[1] if mode == "binary" else None)
    rows = draft._rows(labelled, labels=True)
    rows = rows.where(rows.truth >= 0)
    if rows.n < 100:
        raise EstimatorError(f"only {rows.n} reference rows have a known label, a prediction and a probability; "
                             "CBPE needs at least 100 (thousands for isotonic calibration)")
    if mode == "binary" and np.all(rows.scores >= 0.5) and (rows.predicted == 0).any():
        raise EstimatorError(f"probability column {spec!r} looks like the predicted class's confidence (never below 0.5), "
                             f"not P({classes_t[1]!r}); log P({classes_t[1]!r})")
    calibrators = _fit_calibrators(mode, rows, len(classes_t), calibrator)
    rng = np.random.default_rng(seed)
    # the resamples refit the kind chosen on the whole reference
    kinds = [c.kind for c in calibrators]
    resampled = tuple(_fit_calibrators(mode, rows.where(rng.integers(0, rows.n, rows.n)), len(classes_t), kinds) for _ in range(resamples))
    fitted = CBPE(mode, classes_t, prediction, spec, target, calibrators, draft.positive, rows.n, {}, resampled)
    return dataclasses.replace(fitted, reference_quality=fitted.realized(labelled))


def _fit_calibrators(mode: Mode, rows: _Rows, classes: int, kinds: CalibratorKind | list[CalibratorKind]) -> tuple[Calibrator, ...]:
    kind = (lambda k: kinds) if isinstance(kinds, str) else (lambda k: kinds[k])
    if mode == "binary":
        return (fit_calibrator(rows.scores[:, 0], rows.truth == 1, kind(0)),)
    if mode == "confidence":
        return (fit_calibrator(rows.scores[:, 0], rows.truth == rows.predicted, kind(0)),)
    return tuple(fit_calibrator(rows.scores[:, k], rows.truth == k, kind(k)) for k in range(classes))


# --- the expectations and their band ------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    predicted: np.ndarray  # class index per row
    scores: np.ndarray  # (n, columns) raw probabilities
    truth: np.ndarray  # class index, -1 where unknown
    skipped: int

    @property
    def n(self) -> int:
        return len(self.predicted)

    @property
    def known(self) -> np.ndarray:
        return self.truth >= 0

    def where(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.predicted[keep], self.scores[keep], self.truth[keep], self.skipped)


class _Outcomes:
    """The window's label distribution: known labels as they are, the others from calibration."""

    def __init__(self, cbpe: CBPE, rows: _Rows, probabilities: np.ndarray) -> None:
        self.cbpe, self.rows = cbpe, rows
        known = rows.known
        if cbpe.mode == "multiclass":
            self.q = probabilities.copy()  # (n, K) P(class)
            self.q[known] = np.eye(len(cbpe.classes))[rows.truth[known]]
        else:
            event = rows.truth == (1 if cbpe.mode == "binary" else rows.predicted)
            self.q = np.where(known, event.astype(np.float64), probabilities)  # P(positive) or P(correct)

    def expected(self) -> dict[str, float]:
        predicted, q = self.rows.predicted, self.q
        if self.cbpe.mode == "confidence":
            return {"accuracy": float(q.mean())}
        if self.cbpe.mode == "binary":
            positive = predicted == 1
            return {
                "accuracy": float(np.where(positive, q, 1 - q).mean()),
                "f1": f1_from(float(q @ positive), float(q.sum()), float(positive.sum())),
                "roc_auc": expected_auc(q, self.rows.scores[:, 0]),
            }
        n, k = q.shape
        onehot_pred = np.eye(k)[predicted]
        f1 = [f1_from(float(q[:, c] @ onehot_pred[:, c]), float(q[:, c].sum()), float(onehot_pred[:, c].sum())) for c in range(k)]
        aucs = [expected_auc(q[:, c], self.rows.scores[:, c]) for c in range(k)]
        return {"accuracy": float(q[np.arange(n), predicted].mean()), "f1": float(np.mean(f1)), "roc_auc": float(np.nanmean(aucs))}

    def bands(self, confidence: float, draws: int, rng: np.random.Generator, spread: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
        """Where the realized metric should fall: the quantiles of the metric over label sets
        drawn from q (the window's label noise; Monte Carlo on at most BAND_ROWS rows), widened
        by the spread of the estimate over the bootstrap calibrators (the reference's noise)."""
        from scipy.stats import norm

        n = self.rows.n
        idx = np.sort(rng.choice(n, BAND_ROWS, replace=False)) if n > BAND_ROWS else np.arange(n)
        sampled = metric_draws(self.cbpe.mode, self.q[idx], self.rows.predicted[idx], self.rows.scores[idx], draws, rng)
        alpha = (1 - confidence) / 2
        scale = np.sqrt(len(idx) / n)  # a subsample's spread, rescaled to the whole window
        z = norm.ppf(1 - alpha)
        expected = self.expected()
        bands = {}
        for metric, values in sampled.items():
            value = expected[metric]
            if np.isnan(values).all() or np.isnan(value):
                bands[metric] = (float("nan"), float("nan"))
                continue
            lo, hi = np.nanquantile(values, [alpha, 1 - alpha])
            centre = np.nanmean(values)
            reference_sd = float(np.nanstd([s[metric] for s in spread])) if len(spread) > 1 else 0.0
            below = math.hypot((centre - lo) * scale, z * reference_sd)
            above = math.hypot((hi - centre) * scale, z * reference_sd)
            bands[metric] = (float(value - below), float(value + above))
        return bands


# --- input handling ------------------------------------------------------------------------


def _class_index(values: pd.Series, classes: tuple[Any, ...]) -> np.ndarray:
    """Index of each value in `classes`; -1 where missing, -2 where not a known class.

    Labels compare as numbers when the classes are numbers (1 == 1.0, a float target column
    with missing labels matches int predictions), else as strings.
    """
    missing = values.isna().to_numpy()
    if all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes):
        as_number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        keys, lookup = as_number, np.array(classes, dtype=np.float64)
    else:
        # missing labels become "" here and are marked -1 below
        keys = values.astype("string").fillna("").to_numpy(dtype=str)
        lookup = np.array([str(c) for c in classes])
    order = np.argsort(lookup)
    found = np.searchsorted(lookup[order], keys)
    found = np.clip(found, 0, len(lookup) - 1)
    match = lookup[order][found] == keys
    index = np.where(match, order[found], -2)
    index[missing] = -1
    return index


def _scores(frame: pd.DataFrame, spec: str | tuple[tuple[Any, str], ...]) -> np.ndarray:
    columns = [spec] if isinstance(spec, str) else [c for _, c in spec]
    try:
        return np.column_stack([pd.to_numeric(frame[c], errors="raise").to_numpy(dtype=np.float64) for c in columns])
    except (TypeError, ValueError):
        raise EstimatorError(f"probability columns {columns} must hold numbers") from None


def _check_probabilities(scores: np.ndarray, spec: Any) -> None:
    if (scores < 0).any() or (scores > 1).any():
        raise EstimatorError(f"probability columns {spec!r} hold values outside [0, 1]; log probabilities, not logits or margins")


def _plain(value: Any) -> Any:
    """A JSON-safe label (numpy scalars become Python numbers)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sorted_labels(labels: list[Any]) -> list[Any]:
    plain = list(dict.fromkeys(_plain(v) for v in labels))
    try:
        return sorted(plain)
    except TypeError:
        return sorted(plain, key=str)
