"""Label quality: how much of the true action a labeler's output carries, against baselines.

All metrics are computed on held-out episodes that have true actions. A linear probe (ridge regression,
closed form) from a representation to the true action measures what the representation encodes linearly;
the same probe on raw frame differences and the mean action are the baselines every number is read against.
"""

from __future__ import annotations

import numpy as np


def r2_score(prediction: np.ndarray, target: np.ndarray) -> float:
    """Coefficient of determination over all action dimensions (1 - SSE / SST, SST around the mean)."""
    target = np.asarray(target, dtype=np.float64).reshape(len(target), -1)
    prediction = np.asarray(prediction, dtype=np.float64).reshape(len(target), -1)
    total = ((target - target.mean(axis=0)) ** 2).sum()
    return float(1.0 - ((prediction - target) ** 2).sum() / total) if total > 0 else float("nan")


def ridge_fit_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    """Fit y = W x + b by ridge regression on standardized features; predict on x_test."""
    x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)
    x_test = np.asarray(x_test, dtype=np.float64).reshape(len(x_test), -1)
    mean, scale = x_train.mean(axis=0), x_train.std(axis=0) + 1e-8
    a = np.c_[(x_train - mean) / scale, np.ones(len(x_train))]
    penalty = l2 * len(a) * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    weights = np.linalg.solve(a.T @ a + penalty, a.T @ np.asarray(y_train, dtype=np.float64).reshape(len(a), -1))
    return np.c_[(x_test - mean) / scale, np.ones(len(x_test))] @ weights


def probe_r2(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
             l2: float = 1e-3) -> float:
    return r2_score(ridge_fit_predict(x_train, y_train, x_test, l2), y_test)


def one_hot(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """(N, tokens) integer codes -> (N, tokens * codebook_size) one-hot features."""
    codes = np.asarray(codes).reshape(len(codes), -1)
    return np.eye(codebook_size, dtype=np.float32)[codes].reshape(len(codes), -1)


def codebook_usage(codes: np.ndarray, codebook_size: int) -> dict[str, float]:
    """Perplexity (exp of the code entropy; K when all codes are used evenly) and the fraction used."""
    counts = np.bincount(np.asarray(codes).ravel(), minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return {"perplexity": float(np.exp(-(p * np.log(p)).sum())), "usage": float((counts > 0).mean())}
