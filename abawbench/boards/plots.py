"""The report's figures as inline SVG text (matplotlib, no display, no files).

Every function takes plain numbers and returns one ``<svg>`` element, ready to embed in an HTML
page: the XML prolog and DOCTYPE are dropped, text stays text (``svg.fonttype = none``), and the
output is deterministic (no date in the metadata, element ids from a fixed salt), so a report
rendered twice from the same table is byte-identical.
"""

from __future__ import annotations

import io
import re
from typing import Any, Mapping, Sequence

_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_STYLE = {"svg.hashsalt": "abawbench", "svg.fonttype": "none", "font.size": 9,
          "font.family": "DejaVu Sans", "axes.spines.top": False, "axes.spines.right": False}
ACCENT = "#2b6cb0"
SECOND = "#c05621"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display: reports are made on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def _svg(fig: Any) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    plt.close(fig)
    return _PROLOG.sub("", buffer.getvalue(), count=1).strip()


def bar_chart(values: Mapping[str, float], title: str, *, ylabel: str = "F1") -> str:
    """Per-class scores as vertical bars, each labelled with its value."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(figsize=(max(3.2, 0.45 * len(values) + 1.2), 2.6))
        names = list(values)
        bars = axes.bar(range(len(names)), [values[n] for n in names], color=ACCENT)
        axes.bar_label(bars, labels=[f"{values[n]:.2f}" for n in names], fontsize=7, padding=1)
        axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
        axes.set_ylim(0, 1.08)
        axes.set_ylabel(ylabel)
        axes.set_title(title)
        return _svg(fig)


def heat_map(matrix: Sequence[Sequence[int]], classes: Sequence[str], title: str) -> str:
    """A confusion matrix (rows: true, columns: predicted), shaded by each true class's share
    so rare classes read as clearly as common ones; cells show the counts."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        size = max(3.0, 0.42 * len(classes) + 1.6)
        fig, axes = plt.subplots(figsize=(size + 0.6, size))
        shares = [[cell / max(1, sum(row)) for cell in row] for row in matrix]
        image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for i, row in enumerate(matrix):
            for j, cell in enumerate(row):
                axes.text(j, i, str(cell), ha="center", va="center", fontsize=7,
                          color="white" if shares[i][j] > 0.55 else "black")
        axes.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        axes.set_yticks(range(len(classes)), classes)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(title)
        fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
        return _svg(fig)


def scatter(true: Sequence[float], pred: Sequence[float], title: str) -> str:
    """Predicted against true values with the identity line (a perfect regressor lies on it)."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(figsize=(3.0, 3.0))
        axes.scatter(true, pred, s=6, alpha=0.5, color=ACCENT, linewidths=0)
        low = min([-1.0, *true, *pred])
        high = max([1.0, *true, *pred])
        axes.plot([low, high], [low, high], color="#888888", linewidth=0.8, linestyle="--")
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.set_xlabel("true")
        axes.set_ylabel("predicted")
        axes.set_title(title)
        return _svg(fig)


def training_curves(history: Mapping[str, Sequence[Mapping[str, Any]]], title: str) -> str:
    """Per-epoch training loss (left axis) and selection score (right axis), one line per seed."""
    plt = _pyplot()
    with plt.rc_context(_STYLE):
        fig, loss_axes = plt.subplots(figsize=(4.6, 2.6))
        score_axes = loss_axes.twinx()
        score_axes.spines["right"].set_visible(True)
        for seed, records in history.items():
            epochs = [r["epoch"] for r in records]
            losses = [r.get("train_loss") for r in records]
            loss_axes.plot(epochs, losses, color=ACCENT, linewidth=1, label=f"loss, seed {seed}")
            scored = [(r["epoch"], r["selection_score"]) for r in records if r.get("selection_score") is not None]
            if scored:
                score_axes.plot(*zip(*scored), color=SECOND, linewidth=1, linestyle="--",
                                label=f"selection score, seed {seed}")
        loss_axes.set_xlabel("epoch")
        loss_axes.set_ylabel("training loss", color=ACCENT)
        score_axes.set_ylabel("selection score", color=SECOND)
        loss_axes.set_title(title)
        handles = loss_axes.get_legend_handles_labels()[0] + score_axes.get_legend_handles_labels()[0]
        if handles:
            loss_axes.legend(handles=handles, fontsize=6, loc="best", frameon=False)
        return _svg(fig)
