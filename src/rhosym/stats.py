"""Seeds and intervals: mean ± standard deviation over training seeds, and bootstrap intervals over
test structures.

The bootstrap resamples TEST STRUCTURES (the common test set of a comparison), keeping every seed's
prediction of a resampled structure together, and recomputes the seed-averaged metric; the interval is
the percentile interval of those values. Resampling uses the Poisson bootstrap (each structure's
weight ~ Poisson(1)), which equals the ordinary bootstrap for large test sets and vectorizes, so
200,000 test structures × 6 models stay within seconds and bounded memory (chunks of resamples).

Every interval of one comparison uses the same seed and the same number of structures, so the same
weights: the weight stream of the latest (seed, n) is kept (one byte per weight, at most
``CACHE_ELEMENTS``) and reused by the next call instead of being drawn again. Draws come in the same
order either way, so the intervals are the same as drawing them anew.
"""

from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 20_000_000  # weights held at once (float32: 80 MB)
CACHE_ELEMENTS = 400_000_000  # weights of the latest (seed, n) kept for reuse (uint8: 400 MB)
_STREAM: dict = {}  # {"key": (seed, n), "rng": Generator after the cached rows, "rows": uint8 (rows, n)}


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value; NaN for none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _weights(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    return rng.poisson(1.0, size=(b, n)).astype(np.float32)


def _chunks(n_boot: int, n: int):
    step = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, step):
        yield min(step, n_boot - start)


def _cached_rows(seed: int, n: int, n_rows: int) -> np.ndarray | None:
    """Rows 0..n_rows-1 of ``default_rng(seed).poisson(1, (·, n))`` as uint8, drawn once per (seed, n) and
    extended on demand; None when they would not fit ``CACHE_ELEMENTS`` (or a weight exceeds 255)."""
    if n_rows * n > CACHE_ELEMENTS or n == 0:
        return None
    key = (int(seed), int(n))
    if _STREAM.get("key") != key:
        _STREAM.clear()
        _STREAM.update(key=key, rng=np.random.default_rng(seed), rows=np.empty((0, n), dtype=np.uint8))
    rows = _STREAM["rows"]
    have = len(rows)
    if have < n_rows:
        grown = np.empty((n_rows, n), dtype=np.uint8)
        grown[:have] = rows
        rng = _STREAM["rng"]
        for start in range(have, n_rows, max(1, CHUNK_ELEMENTS // n)):
            b = min(max(1, CHUNK_ELEMENTS // n), n_rows - start)
            w = rng.poisson(1.0, size=(b, n))
            if w.max(initial=0) > 255:
                _STREAM.clear()
                return None
            grown[start:start + b] = w
        _STREAM["rows"] = rows = grown
    return rows[:n_rows]


def _weight_blocks(seed: int, n: int, n_boot: int, chunk_n: int):
    """The float32 weight blocks ``(b, n)`` of resamples 0..n_boot-1 (b from ``_chunks(n_boot, chunk_n)``),
    the same values as drawing them block after block from ``default_rng(seed)``."""
    rows = _cached_rows(seed, n, n_boot)
    if rows is None:
        rng = np.random.default_rng(seed)
        for b in _chunks(n_boot, chunk_n):
            yield _weights(rng, b, n)
        return
    start = 0
    for b in _chunks(n_boot, chunk_n):
        yield rows[start:start + b].astype(np.float32)
        start += b


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return float("nan"), float("nan")
    a = (1.0 - confidence) / 2.0
    return float(np.quantile(s, a)), float(np.quantile(s, 1.0 - a))


def bootstrap_mean(per_item: np.ndarray, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0
                   ) -> tuple[float, float]:
    """Interval of the mean of ``per_item`` (n,) values (e.g. a structure's correctness averaged over
    seeds, or its absolute error averaged over seeds)."""
    x = np.asarray(per_item, dtype=np.float64)
    if n_boot <= 0 or len(x) == 0:
        return float("nan"), float("nan")
    out = []
    for w in _weight_blocks(seed, len(x), n_boot, len(x)):
        b = len(w)
        tot = w.sum(1)
        out.append(np.divide(w @ x, tot, out=np.full(b, np.nan), where=tot > 0))
    return percentile_interval(np.concatenate(out), confidence)


def f1_from_confusion(conf: np.ndarray, average: str = "macro") -> np.ndarray:
    """F1 from (..., C, C) confusion matrices (rows true), over classes present in truth or prediction
    (scikit-learn's convention with zero_division=0)."""
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    true = conf.sum(-1)
    pred = conf.sum(-2)
    denom = true + pred
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)
    present = denom > 0
    if average == "macro":
        return np.divide((f1 * present).sum(-1), present.sum(-1), out=np.full(f1.shape[:-1], np.nan),
                         where=present.sum(-1) > 0)
    support = true
    return np.divide((f1 * support).sum(-1), support.sum(-1), out=np.full(f1.shape[:-1], np.nan),
                     where=support.sum(-1) > 0)


def bootstrap_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int = 1000,
                 confidence: float = 0.95, seed: int = 0, average: str = "macro") -> tuple[float, float]:
    """Interval of the seed-averaged F1. ``y_true`` (n,) and ``y_pred`` (seeds, n) are class indices
    (0..n_classes-1); predictions outside that range count as wrong (a class of their own)."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.atleast_2d(np.asarray(y_pred, dtype=np.int64))
    n = len(yt)
    if n_boot <= 0 or n == 0:
        return float("nan"), float("nan")
    c = n_classes + 1  # the extra class: labels outside the set
    yp = np.where((yp >= 0) & (yp < n_classes), yp, n_classes)
    yt = np.where((yt >= 0) & (yt < n_classes), yt, n_classes)
    pair = yt[None, :] * c + yp  # (seeds, n)
    out = []
    for w in _weight_blocks(seed, n, n_boot, n * max(1, c // 8)):
        b = len(w)
        vals = np.zeros(b)
        rows = (np.arange(b, dtype=np.int64) * (c * c))[:, None]
        for s in range(pair.shape[0]):
            # one bincount for the b resamples: each bin sums the same weights in the same order
            conf = np.bincount((rows + pair[s][None, :]).ravel(), weights=w.ravel(), minlength=b * c * c)
            conf = conf.reshape(b, c, c)[:, :n_classes, :]  # rows: true classes of the label set only
            vals += f1_from_confusion(_square(conf, n_classes), average)
        out.append(vals / pair.shape[0])
    return percentile_interval(np.concatenate(out), confidence)


def _square(conf: np.ndarray, n_classes: int) -> np.ndarray:
    """(b, C, C+1) → (b, C+1, C+1) with an empty row for the out-of-set class (it has no true members)."""
    b = conf.shape[0]
    out = np.zeros((b, n_classes + 1, n_classes + 1))
    out[:, :n_classes, :] = conf
    return out


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """Expected calibration error (the |accuracy − confidence| of equal-width confidence bins, weighted by
    their share of the predictions; Guo et al. 2017) and the bins (lo, hi, n, confidence, accuracy) of a
    reliability diagram. Rows without a confidence (NaN) are left out; (NaN, []) when none is left."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.isfinite(c)
    c, k = c[ok], np.asarray(correct, dtype=np.float64)[ok]
    if not len(c):
        return float("nan"), []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    ece, rows = 0.0, []
    for b in range(bins):
        m = which == b
        if not m.any():
            continue
        conf, acc = float(c[m].mean()), float(k[m].mean())
        ece += m.mean() * abs(acc - conf)
        rows.append({"bin": b, "lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                     "confidence": conf, "accuracy": acc})
    return float(ece), rows
