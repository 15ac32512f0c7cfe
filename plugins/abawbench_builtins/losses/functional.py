"""Masked loss functions, pure: rows whose mask is False contribute nothing, and a batch with
no labelled row gives an exact, differentiable 0 (so a multi-task batch that happens to lack one
task's labels still trains the others).

Values under a False mask are meaningless by contract; they are replaced before any loss sees
them, so a stray sentinel (-1) cannot index out of range or poison a gradient with NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CCC_EPS = 1e-8
"""Added to the CCC denominator so a constant batch has a finite gradient."""


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator``; exactly 0 (still attached to the graph) when the
    denominator is 0, i.e. when no row of the batch is labelled."""
    tiny = torch.finfo(numerator.dtype).tiny
    return numerator / denominator.clamp_min(tiny) * (denominator > 0)


def _masked_mean(per_row: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(w * l) / sum(w)`` over rows; rows with ``w == 0`` are zeroed, not multiplied."""
    return _safe_ratio(torch.where(weight > 0, per_row * weight, torch.zeros_like(per_row)).sum(), weight.sum())


def masked_ccc_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - CCC`` per column ``[K]`` over masked rows (population moments, as the score).

    Zero for a column when no row is labelled. ``CCC_EPS`` in the denominator keeps a batch of
    identical values finite; it is far below any real variance of VA in [-1, 1].
    """
    m = mask.to(pred.dtype).unsqueeze(1)
    y = torch.where(mask.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
    n = m.sum()
    safe_n = n.clamp_min(1)
    mx = (pred * m).sum(0) / safe_n
    my = (y * m).sum(0) / safe_n
    dx = (pred - mx) * m
    dy = (y - my) * m
    vx = (dx * dx).sum(0) / safe_n
    vy = (dy * dy).sum(0) / safe_n
    cov = (dx * dy).sum(0) / safe_n
    ccc = 2 * cov / (vx + vy + (mx - my) ** 2 + CCC_EPS)
    return (1 - ccc) * (n > 0)


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy over masked rows, equal to ``F.cross_entropy(logits[mask], target[mask],
    weight, label_smoothing=...)``: with class weights the mean is weighted by ``weight[target]``
    (PyTorch's convention), which makes any rescaling of the weights irrelevant."""
    y = torch.where(mask, target.long(), torch.zeros_like(target, dtype=torch.long))
    weight = None if weight is None else weight.to(logits.dtype)
    # reduction="none" already scales each row by weight[y] (both the NLL and the smoothing
    # term); PyTorch's mean then divides by sum(weight[y]) over the rows, so do the same
    per_row = F.cross_entropy(logits, y, weight=weight, reduction="none", label_smoothing=label_smoothing)
    per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    denominator = mask.to(logits.dtype)
    if weight is not None:
        denominator = denominator * weight[y]
    return _safe_ratio(per_row.sum(), denominator.sum())


def masked_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multiclass focal loss ``-w_y (1 - p_y)^gamma log p_y`` (Lin et al. 2017), weighted mean
    over masked rows as :func:`masked_cross_entropy`; ``gamma = 0`` is plain cross-entropy."""
    y = torch.where(mask, target.long(), torch.zeros_like(target, dtype=torch.long))
    log_p = F.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)
    per_row = -((1 - log_p.exp()).clamp_min(0) ** gamma) * log_p
    row_weight = mask.to(logits.dtype)
    if weight is not None:
        row_weight = row_weight * weight.to(logits.dtype)[y]
    return _masked_mean(per_row, row_weight)


def masked_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    pos_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Binary cross-entropy with logits, mean over masked rows and all K labels (the mean of
    ``F.binary_cross_entropy_with_logits(logits[mask], target[mask], pos_weight=...)``)."""
    y = torch.where(mask.unsqueeze(1), target.to(logits.dtype), torch.zeros_like(logits))
    per_cell = F.binary_cross_entropy_with_logits(
        logits, y, pos_weight=None if pos_weight is None else pos_weight.to(logits.dtype), reduction="none"
    )
    return _masked_mean(per_cell.mean(1), mask.to(logits.dtype))
