"""The metric functions: one implementation for training, evaluation, export
parity reports, benchmarks and the dashboard (no torch in here).

Library first: scikit-learn for the classification metrics, scipy for the
bootstrap, the `krippendorff` package for alpha. Written by hand only what no
library has: CCC, SAGR, the ECE binning and the vectorised bootstrap statistics.

Conventions (documented here once, relied on everywhere):
- `y_true` holds class indices into `labels` (the model's label order);
  `-1` marks an unlabelled sample and is dropped.
- `probs` are class probabilities [N, C] in `labels` order (apply
  `affect.preprocess.expression_probabilities` to logits first).
- Valence/arousal targets that are NaN are dropped (datasets without them);
  NaN *predictions* are a bug in the model and raise `MetricsError`.
- Undefined values are NaN in the low-level functions: Pearson when either
  side is constant, ROC-AUC when y_true has a single class, Cohen's kappa and
  Krippendorff's alpha when only one category occurs at all, CCC when both
  sides are the same constant (0/0). CCC with a constant prediction and
  varying targets is 0 (its covariance is 0), which is the honest score for a
  model that always says the same thing. `compute_metrics` turns NaN into
  `None` so `metrics.json` stays valid JSON (`null`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn import metrics as skm

from affect.labels import NAME_ALIASES, canonical_name

ECE_BINS = 15
N_BOOTSTRAP = 1000
CI_LEVEL = 0.95


class MetricsError(ValueError):
    """Inputs that no metric can be computed from (empty, mismatched shapes, NaN predictions)."""


# --- small helpers ----------------------------------------------------------------------------

def _canon(name: str) -> str:
    return canonical_name(name) if name.strip().lower() in NAME_ALIASES else name


def _safe(value: float) -> float:
    return float(value) if value is not None else math.nan


def json_safe(obj: Any) -> Any:
    """NaN/inf → None and numpy scalars → Python numbers, recursively (for json.dump)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def _check_probs(probs: np.ndarray, n: int, n_labels: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (n, n_labels):
        raise MetricsError(f"probabilities have shape {probs.shape}, expected ({n}, {n_labels})")
    if not np.isfinite(probs).all():
        raise MetricsError(f"{int((~np.isfinite(probs)).any(axis=1).sum())} rows of predicted "
                           "probabilities are NaN/inf")
    return probs


# --- regression (valence / arousal) ------------------------------------------------------------

def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (population moments).

    0 for a constant prediction against varying targets; NaN only for 0/0
    (both sides the same constant) or empty input."""
    x, y = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if x.size == 0:
        return math.nan
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        # Exact: a constant side has no covariance (the mean's rounding would leave ~1e-34).
        return 0.0 if x[0] != y[0] or np.ptp(x) != np.ptp(y) else math.nan
    mx, my = x.mean(), y.mean()
    cov = ((x - mx) * (y - my)).mean()
    return float(2 * cov / (x.var() + y.var() + (mx - my) ** 2))


def pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson r; NaN (without scipy's ConstantInputWarning) when either side is constant."""
    x, y = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.pearsonr(x, y).statistic)


def sagr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Sign agreement: the share of samples whose predicted sign matches the target's
    (np.sign, so 0 only agrees with 0)."""
    x, y = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if x.size == 0:
        return math.nan
    return float((np.sign(x) == np.sign(y)).mean())


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, name: str = "target") -> dict[str, float]:
    """RMSE, MAE, Pearson, SAGR and CCC over the samples whose target is not NaN."""
    x, y = np.asarray(y_true, np.float64).ravel(), np.asarray(y_pred, np.float64).ravel()
    if x.shape != y.shape:
        raise MetricsError(f"{name}: {x.size} targets but {y.size} predictions")
    if not np.isfinite(y).all():
        raise MetricsError(f"{name}: {int((~np.isfinite(y)).sum())} predictions are NaN/inf")
    keep = np.isfinite(x)
    x, y = x[keep], y[keep]
    if x.size == 0:
        raise MetricsError(f"{name}: no samples with a target (all NaN or empty input)")
    err = y - x
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "mae": float(np.mean(np.abs(err))),
        "pcc": pearson(x, y),
        "sagr": sagr(x, y),
        "ccc": ccc(x, y),
        "n": int(x.size),
    }


# --- classification (expression) ---------------------------------------------------------------

def krippendorff_alpha_nominal(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Krippendorff's alpha, nominal, treating ground truth and model as two coders.

    NaN when only one category occurs at all (the coefficient is 0/0 there)."""
    import krippendorff  # small pure-numpy package; imported lazily to keep `import affect` light

    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.size == 0:
        return math.nan
    if np.unique(np.concatenate([a, b])).size < 2:
        return math.nan
    return float(krippendorff.alpha(reliability_data=np.vstack([a, b]).astype(np.float64),
                                    level_of_measurement="nominal"))


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int = 2) -> float:
    """Share of samples whose true class is among the k most probable ones."""
    y = np.asarray(y_true)
    if y.size == 0:
        return math.nan
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def calibration_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """The reliability diagram's data: `n_bins` equal-width confidence bins (max
    probability), each with its count, mean confidence and accuracy (NaN when empty).
    Bin i holds (i/n, (i+1)/n]; confidence 0 falls into the first bin."""
    y = np.asarray(y_true)
    probs = np.asarray(probs, np.float64)
    conf = probs.max(axis=1) if y.size else np.zeros(0)
    correct = (probs.argmax(axis=1) == y) if y.size else np.zeros(0, bool)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"n_bins": int(n_bins), "count": count.astype(int).tolist(),
                "confidence": (conf_sum / count).tolist(), "accuracy": (acc_sum / count).tolist()}


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE over `n_bins` equal-width confidence bins (max probability vs accuracy):
    the count-weighted mean |accuracy − confidence| of `calibration_bins`."""
    y = np.asarray(y_true)
    if y.size == 0:
        return math.nan
    b = calibration_bins(y, probs, n_bins)
    count = np.asarray(b["count"], np.float64)
    gap = np.abs(np.nan_to_num(np.asarray(b["accuracy"])) - np.nan_to_num(np.asarray(b["confidence"])))
    return float((count * gap).sum() / y.size)


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean −log p(true class) (what a temperature is fitted to lower), p floored at 1e-12."""
    y = np.asarray(y_true).astype(np.int64).ravel()
    if y.size == 0:
        return math.nan
    p = np.asarray(probs, np.float64)[np.arange(y.size), y]
    return float(-np.log(np.maximum(p, 1e-12)).mean())


def _ovr_macro(score: Callable[..., float], y: np.ndarray, probs: np.ndarray) -> float:
    """Macro average of a one-vs-rest binary score over the classes present in
    y_true that also have negatives (a class absent from the test set has no
    defined ROC/PR curve)."""
    values = []
    for c in np.unique(y):
        positive = y == c
        if positive.all():
            continue
        values.append(score(positive, probs[:, c]))
    return float(np.mean(values)) if values else math.nan


def expression_metrics(labels: Sequence[str], y_true: np.ndarray, probs: np.ndarray,
                       top_k: int = 2, n_bins: int = ECE_BINS) -> dict[str, Any]:
    """All expression metrics for class indices `y_true` (into `labels`) and
    probabilities `probs` [N, len(labels)]. Unlabelled samples (-1) are dropped.

    Macro-F1 and weighted-F1 follow scikit-learn's default label set (classes
    seen in y_true or y_pred); per-class rows and the confusion matrix cover
    every label."""
    labels = list(labels)
    y = np.asarray(y_true).astype(np.int64).ravel()
    probs = _check_probs(probs, y.size, len(labels))
    keep = y >= 0
    y, probs = y[keep], probs[keep]
    if y.size == 0:
        raise MetricsError("expression: no labelled samples (empty input or all labels are -1)")
    if y.max() >= len(labels):
        raise MetricsError(f"expression: label index {int(y.max())} outside the {len(labels)} labels")
    pred = probs.argmax(axis=1)
    idx = list(range(len(labels)))
    with warnings.catch_warnings():
        # Degenerate inputs (a single class) make sklearn warn and return NaN: the NaN is the answer.
        warnings.simplefilter("ignore")
        prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
        kappa = skm.cohen_kappa_score(y, pred)
    counts = skm.confusion_matrix(y, pred, labels=idx)
    row = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row, out=np.zeros(counts.shape, np.float64), where=row > 0)
    return {
        "labels": labels,
        "n": int(y.size),
        "accuracy": float(skm.accuracy_score(y, pred)),
        f"top{top_k}_accuracy": top_k_accuracy(y, probs, top_k),
        "macro_f1": float(skm.f1_score(y, pred, average="macro", zero_division=0)),
        "weighted_f1": float(skm.f1_score(y, pred, average="weighted", zero_division=0)),
        "cohen_kappa": _safe(kappa),
        "krippendorff_alpha": krippendorff_alpha_nominal(y, pred),
        "roc_auc_macro": _ovr_macro(skm.roc_auc_score, y, probs),
        "pr_auc_macro": _ovr_macro(skm.average_precision_score, y, probs),
        "ece": expected_calibration_error(y, probs, n_bins),
        "nll": negative_log_likelihood(y, probs),
        "mean_confidence": float(probs.max(axis=1).mean()),
        "calibration": calibration_bins(y, probs, n_bins),
        "per_class": {
            name: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "confusion": counts.tolist(),
        "confusion_normalised": normalised.tolist(),
    }


def restrict_classes(labels: Sequence[str], y_true: np.ndarray, probs: np.ndarray,
                     keep: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Keep only the classes named in `keep` (matched by canonical name).

    The probability columns of the other classes are dropped and the rest
    renormalised, so argmax is taken over the shared classes only (a FER2013
    test set cannot reward or punish a Contempt prediction). `y_true` is
    re-indexed; a labelled sample of a dropped class is an error."""
    labels = list(labels)
    wanted = {_canon(k) for k in keep}
    cols = [i for i, name in enumerate(labels) if _canon(name) in wanted]
    if not cols:
        raise MetricsError(f"no class in common between the model's labels {labels} and {sorted(wanted)}")
    y = np.asarray(y_true).astype(np.int64).ravel()
    remap = np.full(len(labels), -2, np.int64)
    remap[cols] = np.arange(len(cols))
    labelled = y >= 0
    new_y = np.full(y.shape, -1, np.int64)
    new_y[labelled] = remap[y[labelled]]
    if (new_y == -2).any():
        dropped = sorted({labels[i] for i in y[labelled][new_y[labelled] == -2]})
        raise MetricsError(f"samples are labelled {dropped}, which the restriction {sorted(wanted)} leaves out")
    sub = np.asarray(probs, np.float64)[:, cols]
    total = sub.sum(axis=1, keepdims=True)
    sub = np.divide(sub, total, out=np.full(sub.shape, 1.0 / len(cols)), where=total > 0)
    return [labels[i] for i in cols], new_y, sub


# --- action units (multi-label) ----------------------------------------------------------------

def au_metrics(names: Sequence[str], y_true: np.ndarray, probs: np.ndarray,
               threshold: float | Sequence[float] | None = 0.5) -> dict[str, Any]:
    """Per-AU precision / recall / F1 / AP and support, macro- and micro-F1, binary accuracy
    and mAP. `y_true` is 0/1 [N, A] with NaN for "not annotated" (masked per AU); `probs` are
    sigmoid probabilities; an AU is predicted present at probability ≥ `threshold` (one for
    all, or one per AU: a model's `ModelSpec.au_thresholds`; None = 0.5). Micro-F1 pools every
    annotated (face, AU) decision; mAP (threshold-free) averages the AUs that have at least
    one positive. "threshold" in the result is the number, or "per AU" with "thresholds"."""
    from affect.aus import threshold_array

    names = list(names)
    t = np.asarray(y_true, np.float64)
    p = np.asarray(probs, np.float64)
    if t.ndim != 2 or t.shape != p.shape or t.shape[1] != len(names):
        raise MetricsError(f"action units: targets {t.shape}, probabilities {p.shape}, {len(names)} names")
    try:
        cut = threshold_array(threshold, names)
    except ValueError as exc:
        raise MetricsError(f"action units: {exc}") from None
    if not np.isfinite(p).all():
        raise MetricsError("action units: predicted probabilities contain NaN/inf")
    valid = np.isfinite(t)
    if not valid.any():
        raise MetricsError("action units: no annotated samples")
    per_au, f1s, aps = {}, [], []
    correct = total = 0
    pooled_true, pooled_pred = [], []
    for j, name in enumerate(names):
        m = valid[:, j]
        yt = t[m, j] > 0.5
        yp = p[m, j] >= cut[j]
        prec, rec, f1, _ = skm.precision_recall_fscore_support(yt, yp, average="binary", zero_division=0) \
            if m.any() else (math.nan,) * 4
        ap = float(skm.average_precision_score(yt, p[m, j])) if yt.any() else math.nan
        correct += int((yt == yp).sum())
        total += int(m.sum())
        pooled_true.append(yt)
        pooled_pred.append(yp)
        per_au[name] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "ap": ap,
                        "support": int(yt.sum()), "n": int(m.sum()), "threshold": float(cut[j])}
        if m.any():
            f1s.append(float(f1))
        if not math.isnan(ap):
            aps.append(ap)
    micro = float(skm.f1_score(np.concatenate(pooled_true), np.concatenate(pooled_pred), zero_division=0))
    uniform = bool(np.all(cut == cut[0]))
    out = {
        "names": names,
        "f1_macro": float(np.mean(f1s)),
        "f1_micro": micro,
        "binary_accuracy": correct / total,
        "map": float(np.mean(aps)) if aps else math.nan,
        "threshold": float(cut[0]) if uniform else "per AU",
        "per_au": per_au,
    }
    if not uniform:
        out["thresholds"] = [float(v) for v in cut]
    return out


# --- bootstrap ---------------------------------------------------------------------------------
# Vectorised statistics: each takes paired arrays with resamples on the leading
# axes and samples on `axis`, and returns one value per resample.

def accuracy_stat(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    return (y_true == y_pred).mean(axis=axis)


def macro_f1_stat(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """Macro-F1 over the classes seen in y_true or y_pred of each resample (sklearn's default).

    One bincount builds every resample's confusion matrix at once; classes
    absent from a resample (no true or predicted sample) are not averaged."""
    t, p = np.moveaxis(np.asarray(y_true), axis, -1), np.moveaxis(np.asarray(y_pred), axis, -1)
    lead = t.shape[:-1]
    if np.issubdtype(t.dtype, np.integer) and np.issubdtype(p.dtype, np.integer) and min(t.min(), p.min()) >= 0:
        k = int(max(t.max(), p.max())) + 1  # class indices: no unique() pass over the resamples
        codes = t * k + p
    else:
        classes = np.union1d(np.unique(t), np.unique(p))
        k = classes.size
        codes = np.searchsorted(classes, t) * k + np.searchsorted(classes, p)
    codes = codes.reshape(-1, t.shape[-1])
    b = codes.shape[0]
    codes += (np.arange(b) * k * k)[:, None]
    cm = np.bincount(codes.ravel(), minlength=b * k * k).reshape(b, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    denom = cm.sum(axis=2) + cm.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(denom.shape), where=denom > 0)
    seen = (denom > 0).sum(axis=1)
    return (f1.sum(axis=1) / np.maximum(seen, 1)).reshape(lead)


def ccc_stat(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    mx = y_true.mean(axis=axis, keepdims=True)
    my = y_pred.mean(axis=axis, keepdims=True)
    cov = ((y_true - mx) * (y_pred - my)).mean(axis=axis)
    denom = y_true.var(axis=axis) + y_pred.var(axis=axis) + (mx - my).squeeze(axis) ** 2
    return np.divide(2 * cov, denom, out=np.full(denom.shape, np.nan), where=denom > 0)


def bootstrap_ci(statistic: Callable[..., np.ndarray], *arrays: np.ndarray,
                 n_resamples: int = N_BOOTSTRAP, seed: int = 0,
                 level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile bootstrap CI of a vectorised paired statistic (see `*_stat`).

    Seeded, so the same inputs give the same interval; resampled in batches
    so memory stays bounded on large test sets."""
    arrays = tuple(np.asarray(a) for a in arrays)
    n = arrays[0].shape[0]
    if n == 0:
        raise MetricsError("bootstrap: empty input")
    if n == 1:
        value = float(statistic(*[a[None] for a in arrays], axis=-1)[0])
        return value, value
    batch = max(1, min(n_resamples, 4_000_000 // n))
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # degenerate resamples are fine: NaNs become a NaN bound
        res = stats.bootstrap(arrays, statistic, n_resamples=n_resamples, batch=batch, vectorized=True,
                              paired=True, confidence_level=level, method="percentile",
                              rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


# --- metrics.json ------------------------------------------------------------------------------

def compute_metrics(labels: Sequence[str], y_true: np.ndarray | None, probs: np.ndarray | None,
                    va_true: np.ndarray | None = None, va_pred: np.ndarray | None = None,
                    aus_true: np.ndarray | None = None, aus_prob: np.ndarray | None = None,
                    au_names: Sequence[str] | None = None, dataset: str = "", model: str = "",
                    restrict_to: Sequence[str] | None = None, bootstrap: int = N_BOOTSTRAP,
                    seed: int = 0, au_thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """The `metrics.json` dict (DESIGN.md schema + "ci", "ece", "top2_accuracy",
    "confusion_normalised", "note"), JSON-safe (undefined values are None).

    `restrict_to` names the classes the evaluation set can have; metrics are
    then computed over the classes shared with `labels` and a note says so.
    `va_true`/`va_pred` are [N, 2] (valence, arousal); NaN targets are dropped.
    Sections without any target (e.g. no valence on FER2013) are left out.
    `bootstrap` resamples for the CIs of accuracy, macro-F1 and the CCCs; 0
    skips them ("ci" is then empty), e.g. for per-epoch validation. `au_thresholds`: one
    decision threshold per AU (the model's `ModelSpec.au_thresholds`); None or [] = 0.5."""
    labels = list(labels)
    notes: list[str] = []
    out: dict[str, Any] = {"dataset": dataset, "n": 0, "model": model}
    ci: dict[str, list[float]] = {}
    sizes = [len(a) for a in (y_true, va_true, aus_true) if a is not None]
    if not sizes or max(sizes) == 0:
        raise MetricsError(f"nothing to evaluate for {dataset or 'dataset'}: empty input")
    out["n"] = int(max(sizes))

    if y_true is not None and probs is not None and (np.asarray(y_true) >= 0).any():
        eval_labels, y, p = labels, np.asarray(y_true).astype(np.int64).ravel(), np.asarray(probs)
        _check_probs(p, y.size, len(labels))
        if restrict_to is not None:
            eval_labels, y, p = restrict_classes(labels, y, p, restrict_to)
            if len(eval_labels) < len(labels):
                left_out = [x for x in labels if x not in eval_labels]
                notes.append(f"expression metrics over the {len(eval_labels)} classes shared with "
                             f"the dataset; left out {left_out} (argmax restricted to the shared classes)")
        expr = expression_metrics(eval_labels, y, p)
        out["expression"] = expr
        if bootstrap > 0:
            m = y >= 0
            pred = p[m].argmax(axis=1)
            ci["accuracy"] = list(bootstrap_ci(accuracy_stat, y[m], pred, n_resamples=bootstrap, seed=seed))
            ci["macro_f1"] = list(bootstrap_ci(macro_f1_stat, y[m], pred, n_resamples=bootstrap, seed=seed))
    elif y_true is not None:
        notes.append("no expression labels: expression metrics left out")

    if va_true is not None and va_pred is not None:
        t = np.asarray(va_true, np.float64).reshape(-1, 2)
        p = np.asarray(va_pred, np.float64).reshape(-1, 2)
        if t.shape != p.shape:
            raise MetricsError(f"valence/arousal: targets {t.shape} vs predictions {p.shape}")
        for j, name in enumerate(("valence", "arousal")):
            if not np.isfinite(t[:, j]).any():
                notes.append(f"no {name} targets: {name} metrics left out")
                if not np.isfinite(p[:, j]).all():
                    raise MetricsError(f"{name}: predictions contain NaN/inf")
                continue
            out[name] = regression_metrics(t[:, j], p[:, j], name)
            if bootstrap > 0:
                keep = np.isfinite(t[:, j])
                ci[f"{name}_ccc"] = list(bootstrap_ci(ccc_stat, t[keep, j], p[keep, j],
                                                      n_resamples=bootstrap, seed=seed))

    if aus_true is not None and aus_prob is not None:
        names = list(au_names) if au_names else [f"AU{j}" for j in range(np.asarray(aus_prob).shape[1])]
        out["action_units"] = au_metrics(names, aus_true, aus_prob, au_thresholds or None)

    if not any(k in out for k in ("expression", "valence", "arousal", "action_units")):
        raise MetricsError(f"nothing to evaluate for {dataset or 'dataset'}: no labels or targets")
    out["ci"] = ci
    out["ci_level"] = CI_LEVEL
    if notes:
        out["note"] = "; ".join(notes)
    return json_safe(out)


# Headline metrics, in the order reports and comparisons show them:
# (section, key, ci key or None, higher is better).
HEADLINE: tuple[tuple[str, str, str | None, bool], ...] = (
    ("expression", "accuracy", "accuracy", True),
    ("expression", "macro_f1", "macro_f1", True),
    ("expression", "weighted_f1", None, True),
    ("expression", "cohen_kappa", None, True),
    ("expression", "krippendorff_alpha", None, True),
    ("expression", "roc_auc_macro", None, True),
    ("expression", "pr_auc_macro", None, True),
    ("expression", "ece", None, False),
    ("expression", "nll", None, False),
    ("valence", "ccc", "valence_ccc", True),
    ("valence", "rmse", None, False),
    ("valence", "sagr", None, True),
    ("arousal", "ccc", "arousal_ccc", True),
    ("arousal", "rmse", None, False),
    ("arousal", "sagr", None, True),
    ("action_units", "f1_macro", None, True),
    ("action_units", "f1_micro", None, True),
    ("action_units", "binary_accuracy", None, True),
    ("action_units", "map", None, True),
)


# --- reading metrics.json back ----------------------------------------------------------------

SECTIONS = ("expression", "valence", "arousal", "action_units")


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def check_metrics(metrics: Any, source: str = "metrics.json") -> dict[str, Any]:
    """`metrics` if it has the shape `compute_metrics` writes (the parts a reader
    uses: sections, headline numbers, labels, confusion matrices, CIs); else a
    one-line MetricsError naming `source` and the first field that is wrong.
    A file edited by hand or written by another tool must not become a traceback
    in `train compare` or on the dashboard's Metrics page."""
    def fail(field: str, problem: str) -> MetricsError:
        return MetricsError(f"{source}: {field} {problem}")

    if not isinstance(metrics, dict):
        raise fail("the top level", f"must be a JSON object, not {type(metrics).__name__}")
    for section in SECTIONS:
        value = metrics.get(section)
        if value is not None and not isinstance(value, dict):
            raise fail(f'"{section}"', f"must be an object, not {type(value).__name__}")
    for section, key, _ci_key, _higher in HEADLINE:
        value = (metrics.get(section) or {}).get(key)
        if not _is_number(value):
            raise fail(f'"{section}.{key}"', f"must be a number or null, not {type(value).__name__}")
    for key in ("n", "ci_level"):
        if not _is_number(metrics.get(key)):
            raise fail(f'"{key}"', f"must be a number, not {type(metrics.get(key)).__name__}")
    ci = metrics.get("ci")
    if ci is not None:
        if not isinstance(ci, dict):
            raise fail('"ci"', f"must be an object, not {type(ci).__name__}")
        for pair in ci.values():
            if pair is not None and not (isinstance(pair, list) and len(pair) == 2
                                         and all(_is_number(v) for v in pair)):
                raise fail('"ci"', "entries must be [low, high] pairs of numbers")
    expr = metrics.get("expression") or {}
    labels = expr.get("labels")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise fail('"expression.labels"', "must be a list of class names")
    for key in ("confusion", "confusion_normalised"):
        matrix = expr.get(key)
        if matrix is None:
            continue
        n = len(labels or [])
        if not (isinstance(matrix, list) and len(matrix) == n
                and all(isinstance(row, list) and len(row) == n and all(_is_number(v) for v in row)
                        for row in matrix)):
            raise fail(f'"expression.{key}"', f"must be a {n} × {n} matrix of numbers (one row and column "
                                               "per label)")
    per_class = expr.get("per_class")
    if per_class is not None and not (isinstance(per_class, dict)
                                      and all(isinstance(v, dict) for v in per_class.values())):
        raise fail('"expression.per_class"', "must map each class to an object of numbers")
    if any(not _is_number(v) for scores in (per_class or {}).values() for v in scores.values()):
        raise fail('"expression.per_class"', "scores must be numbers or null")
    return metrics
