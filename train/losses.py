"""Multi-task losses with per-sample masks, so datasets that lack a class or
a target (FER2013: no Contempt, no valence/arousal) can share one batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, class_mask: torch.Tensor | None = None,
                         weight: torch.Tensor | None = None, smoothing: float = 0.0,
                         soft: torch.Tensor | None = None,
                         sample_smoothing: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over each sample's allowed classes; target -1 = no label.

    Logits of classes a sample's dataset cannot have are removed from its
    softmax (not pushed down), and label smoothing spreads only over the
    allowed classes. `soft` [N, C]: a label distribution per sample (FER+
    votes) used instead of the one-hot target where its row is finite;
    `sample_smoothing` [N]: a per-sample smoothing (its dataset's) where
    finite, else `smoothing`.
    """
    valid = target >= 0
    if not valid.any():
        return logits.sum() * 0.0
    logits, target = logits[valid], target[valid]
    allowed = class_mask[valid].bool() if class_mask is not None else torch.ones_like(logits, dtype=torch.bool)
    logp = torch.log_softmax(logits.masked_fill(~allowed, -1e9), dim=1)
    logp = logp.masked_fill(~allowed, 0.0)
    one_hot = F.one_hot(target, logits.shape[1]).to(logp.dtype)
    if soft is not None:
        soft = soft[valid].to(logp.dtype)
        has = torch.isfinite(soft).all(1, keepdim=True)
        dist = torch.where(has, soft.nan_to_num(0.0), 0.0) * allowed.to(logp.dtype)
        dist = dist / dist.sum(1, keepdim=True).clamp(min=1e-8)
        one_hot = torch.where(has & (dist.sum(1, keepdim=True) > 0), dist, one_hot)
    eps = torch.full((len(target), 1), float(smoothing), dtype=logp.dtype, device=logp.device)
    if sample_smoothing is not None:
        own = sample_smoothing[valid].to(logp.dtype).reshape(-1, 1)
        eps = torch.where(torch.isfinite(own), own, eps)
    if (eps > 0).any():
        spread = allowed.to(logp.dtype) / allowed.sum(1, keepdim=True).clamp(min=1)
        one_hot = (1 - eps) * one_hot + eps * spread
    per_sample = -(one_hot * logp).sum(1)
    if weight is not None:
        w = weight.to(logp.dtype)[target]
        return (per_sample * w).sum() / w.sum().clamp(min=1e-8)
    return per_sample.mean()


def ccc(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Concordance correlation coefficient of two 1-D tensors."""
    pm, tm = pred.mean(), target.mean()
    pv, tv = pred.var(unbiased=False), target.var(unbiased=False)
    cov = ((pred - pm) * (target - tm)).mean()
    return 2 * cov / (pv + tv + (pm - tm) ** 2 + 1e-8)


def va_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "ccc+mse") -> torch.Tensor:
    """Valence/arousal loss over masked entries: 1 - CCC (per dimension), MSE, or both."""
    total = pred.sum() * 0.0
    for d in range(pred.shape[1]):
        m = mask[:, d].bool()
        if m.sum() < 2:
            continue
        p, t = pred[m, d], target[m, d]
        if "ccc" in kind:
            total = total + (1 - ccc(p, t))
        if "mse" in kind:
            total = total + F.mse_loss(p, t)
    return total


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    m = mask.bool()
    if not m.any():
        return pred.sum() * 0.0
    fn = F.l1_loss if kind == "l1" else F.mse_loss
    return fn(pred[m], target[m])


def au_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
            pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Masked multi-label BCE; `pos_weight` [A] weighs each AU's positives (rare AUs)."""
    m = mask.to(logits.dtype)
    if m.sum() == 0:
        return logits.sum() * 0.0
    raw = F.binary_cross_entropy_with_logits(logits, target, reduction="none", pos_weight=pos_weight)
    return (raw * m).sum() / m.sum()
