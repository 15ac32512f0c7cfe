"""``abawbench report``: one standalone HTML page per track, built from result files or from a
committed leaderboard JSON.

The page holds the leaderboard (sortable, intervals drawn), the ablation view when a reference
is chosen, and per measured entry: F1 per class (and per label for multilabel tasks, e.g. the
AUs of ``mtl``), the confusion matrix as a heat map, predicted against true values of each
regression output with its CCC, the training curves when the result kept them, and the
provenance (data and its origin, weights, seeds, commits, versions). Plots are inline SVG, CSS
and script inline: the file opens offline. What a figure needs but the input lacks (an old
result without history, a leaderboard JSON without details) is said on the page, never drawn
from something else.
"""

from __future__ import annotations

from typing import Any, Mapping

from abawbench.boards import plots
from abawbench.boards.ablation import ablation_html, build_ablation
from abawbench.boards.build import REPORTED, Leaderboard, Row
from abawbench.boards.formats import number
from abawbench.boards.html import esc, leaderboard_tables, page


def render_report(board: Leaderboard, reference: str | None = None) -> str:
    """The report page of ``board``; ``reference`` (a row's label or entry id) adds the ablation view."""
    measured = [row for section in board.sections if section.kind != REPORTED for row in section.rows]
    anchors = {row.entry: f"entry-{position}" for position, row in enumerate(measured, start=1)}

    def label_cell(row: Row) -> str:
        anchor = anchors.get(row.entry)
        text = esc(row.label or row.entry)
        return f'<a href="#{anchor}">{text}</a>' if anchor else text

    parts = [f"<h1>abawbench report: track {esc(board.track)}</h1>",
             f'<p class="lead">abawbench {esc(board.version or "?")}. Every number comes with the data it was '
             "measured on; generated data is marked as a synthetic stand-in.</p>",
             '<nav><a href="#leaderboard">Leaderboard</a>'
             + (' · <a href="#ablation">Ablation</a>' if reference else "")
             + (' · <a href="#entries">Entries</a>' if measured else "") + "</nav>",
             '<h2 id="leaderboard">Leaderboard</h2>', leaderboard_tables(board, label_cell)]
    if measured and board.details:
        parts += ['<h3>Where each number comes from</h3>', provenance_table(measured, board.details, label_cell)]
    if reference:
        parts += ['<h2 id="ablation">Ablation</h2>', ablation_html(build_ablation(board, reference))]
    if measured:
        parts.append('<h2 id="entries">Entries</h2>')
        parts += [entry_html(row, anchors[row.entry], board.details.get(row.entry)) for row in measured]
    return page(f"abawbench report: {board.track}", "\n".join(parts))


def provenance_table(rows: list[Row], details: Mapping[str, Any], label_cell) -> str:
    """One line per measured entry: its data and origin, weights, seeds, commit and version."""
    lines = []
    for row in rows:
        provenance = details.get(row.entry, {}).get("provenance", {})
        seeds = ", ".join(map(str, provenance.get("seeds", row.seed_list)))
        cells = [label_cell(row)] + [esc(str(value)) for value in (
            f"{provenance.get('dataset', '?')}: {provenance.get('origin', '?')}", provenance.get("weights", "?"),
            seeds, ", ".join(commit[:12] for commit in provenance.get("commits", [])) or "unknown",
            provenance.get("versions", {}).get("abawbench", row.version))]
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("entry", "data", "weights", "seeds", "commit", "abawbench"))
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(lines)
            + "\n</tbody>\n</table></div>")


def entry_html(row: Row, anchor: str, details: Mapping[str, Any] | None) -> str:
    """One entry's section: its score, figures and provenance."""
    score = number(row.mean) if row.mean is not None else row.status
    if row.seeds > 1 and row.std is not None:
        score += f" ± {row.std:.4f}"
    head = (f'<section class="entry" id="{anchor}"><h3>{esc(row.label or row.entry)}</h3>'
            f'<p class="note">rank {esc(row.rank)} · score {esc(score)} · {row.seeds}/{row.seeds_total} seeds'
            + (f" · {esc(row.note)}" if row.note else "") + "</p>")
    if not details:
        return head + ('<p class="note">No per-entry details in this input (a leaderboard JSON written '
                       "without them); render the report from the runs folder to see them.</p></section>")
    figures = _figures(row, details)
    body = [f'<div class="figures">{"".join(figures)}</div>' if figures else
            '<p class="note">No figures: the result holds no per-class scores.</p>']
    if not details.get("history"):
        body.append('<p class="note">No training curves: the result does not keep per-epoch records.</p>')
    body.append(_provenance_html(details.get("provenance", {})))
    return head + "\n".join(body) + "</section>"


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"


def _figures(row: Row, details: Mapping[str, Any]) -> list[str]:
    out = []
    confusion = details.get("confusion", {})
    for task, classes in details.get("per_class", {}).items():
        if not classes:
            continue
        title = f"per-class F1 ({task})" if task in confusion else f"per-{task.upper()} F1"
        out.append(_figure(plots.bar_chart(classes, title), f"{title}, mean over completed seeds"))
    for task, matrix in confusion.items():
        out.append(_figure(plots.heat_map(matrix["matrix"], matrix["classes"], f"confusion ({task})"),
                           "rows: true class, columns: predicted; counts summed over seeds"))
    for name, points in details.get("scatter", {}).items():
        title = f"{name}: CCC {points['ccc']:.3f}"
        out.append(_figure(plots.scatter(points["true"], points["pred"], title),
                           f"validation, seed {points.get('seed', '?')}; CCC over every labelled image, "
                           f"{len(points['true'])} points drawn"))
    history = details.get("history", {})
    if history:
        out.append(_figure(plots.training_curves(history, "training curves"),
                           "per-epoch training loss and selection score, per seed"))
    return out


def _provenance_html(provenance: Mapping[str, Any]) -> str:
    """Where the entry's numbers come from, as a definition list."""
    if not provenance:
        return ""
    fingerprints = provenance.get("fingerprints", {})
    sizes = provenance.get("split_sizes", {})
    items = [
        ("data", f"{provenance.get('dataset', '?')}: {provenance.get('origin', '')}"),
        ("splits", ", ".join(f"{split} {sizes.get(split, '?')} images, fingerprint {fingerprint}"
                             for split, fingerprint in fingerprints.items())),
        ("model", f"{provenance.get('model', '?')} (weights: {provenance.get('weights', '?')})"),
        ("protocol / loss", f"{provenance.get('protocol', '?')} / {provenance.get('loss', '?')}"),
        ("selected on", provenance.get("selection") or "—"),
        ("seeds", ", ".join(map(str, provenance.get("seeds", [])))
         + (f" (failed: {', '.join(map(str, provenance['failed_seeds']))})" if provenance.get("failed_seeds") else "")),
        ("best epochs", ", ".join(f"seed {s}: {e}" for s, e in provenance.get("best_epochs", {}).items()) or "—"),
        ("commit", ", ".join(provenance.get("commits", [])) or "unknown"),
        ("versions", ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items())),
        ("written", ", ".join(provenance.get("created", []))),
    ]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(str(v))}</dd>" for k, v in items)
    return f'<h4>Provenance</h4><dl class="provenance">{rows}</dl>'
