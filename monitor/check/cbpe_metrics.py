"""CBPE's metric arithmetic: the expected accuracy, f1 and roc_auc from calibrated probabilities,
and their Monte Carlo draws (labels drawn from those probabilities) that make the band."""

from __future__ import annotations

from typing import Literal

import numpy as np

Mode = Literal["binary", "multiclass", "confidence"]



def metric_draws(mode: Mode, q: np.ndarray, predicted: np.ndarray, scores: np.ndarray, draws: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(predicted)
    batch = max(1, min(draws, 2_000_000 // max(n, 1)))
    out: dict[str, list[np.ndarray]] = {}
    ranks = [midranks(scores[:, c]) for c in range(scores.shape[1])]
    done = 0
    while done < draws:
        b = min(batch, draws - done)
        done += b
        if mode == "multiclass":
            k = q.shape[1]
            cumulative = np.cumsum(q, axis=1)
            cumulative[:, -1] = 1.0
            u = rng.random((b, n, 1))
            labels = (u > cumulative[None, :, :]).sum(axis=2)  # (b, n)
            correct = labels == predicted[None, :]
            f1s, aucs = [], []
            for c in range(k):
                y = (labels == c).astype(np.float64)
                pred_c = (predicted == c).astype(np.float64)
                f1s.append(f1_from_vec(y @ pred_c, y.sum(axis=1), pred_c.sum()))
                aucs.append(auc_vec(y, ranks[c]))
            _append(out, "accuracy", correct.mean(axis=1))
            _append(out, "f1", np.mean(f1s, axis=0))
            with np.errstate(all="ignore"):
                _append(out, "roc_auc", np.nanmean(np.vstack(aucs), axis=0) if not np.isnan(aucs).all() else np.full(b, np.nan))
            continue
        y = (rng.random((b, n)) < q[None, :]).astype(np.float64)
        if mode == "confidence":
            _append(out, "accuracy", y.mean(axis=1))
            continue
        positive = (predicted == 1).astype(np.float64)
        _append(out, "accuracy", (y @ positive + (1 - y) @ (1 - positive)) / n)
        _append(out, "f1", f1_from_vec(y @ positive, y.sum(axis=1), positive.sum()))
        _append(out, "roc_auc", auc_vec(y, ranks[0]))
    return {m: np.concatenate(v) for m, v in out.items()}


def _append(out: dict[str, list[np.ndarray]], metric: str, values: np.ndarray) -> None:
    out.setdefault(metric, []).append(np.asarray(values, dtype=np.float64))


def f1_from(tp: float, positives: float, predicted_positives: float) -> float:
    denominator = positives + predicted_positives
    return 2 * tp / denominator if denominator > 0 else 0.0  # sklearn's zero_division=0


def f1_from_vec(tp: np.ndarray, positives: np.ndarray, predicted_positives: float) -> np.ndarray:
    denominator = positives + predicted_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0)


def midranks(scores: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(scores)


def auc_vec(y: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC of each label set (rows of y) against fixed midranks of the score."""
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (y @ ranks - n1 * (n1 + 1) / 2) / (n1 * n0)
    return np.where((n1 > 0) & (n0 > 0), auc, np.nan)


def auc_of_labels(y: np.ndarray, ranks: np.ndarray) -> float:
    return float(auc_vec(y[None, :], ranks)[0])


def expected_auc(q: np.ndarray, scores: np.ndarray) -> float:
    """E[sum over pairs y_i (1 - y_j) [s_i > s_j]] / E[sum y_i (1 - y_j)], i != j, ties count half."""
    order = np.argsort(scores, kind="stable")
    s, p = scores[order], q[order]
    neg = 1 - p
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group_neg = np.add.reduceat(neg, starts)
    below = np.r_[0.0, np.cumsum(group_neg)[:-1]]  # negative mass strictly below each tie group
    sizes = np.diff(np.r_[starts, len(s)])
    below_row = np.repeat(below, sizes)
    same_row = np.repeat(group_neg, sizes) - neg  # negative mass tied with the row, itself excluded
    numerator = float(p @ (below_row + 0.5 * same_row))
    denominator = float(p.sum() * neg.sum() - p @ neg)
    return numerator / denominator if denominator > 0 else float("nan")


def macro_f1(onehot: np.ndarray, predicted: np.ndarray, present: np.ndarray) -> float:
    values = []
    for c in present:
        y = onehot[:, c]
        pred_c = predicted == c
        values.append(f1_from(float(y @ pred_c), float(y.sum()), float(pred_c.sum())))
    return float(np.mean(values))


def macro_auc(onehot: np.ndarray, scores: np.ndarray) -> float:
    aucs = [auc_of_labels(onehot[:, c], midranks(scores[:, c])) for c in range(onehot.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")
