"""The ablation view of a leaderboard: every row of one section against a chosen reference row.

``abawbench leaderboard --reference LABEL`` (and ``report --reference``) shows each row's
primary score with its difference to the reference's, the sub-score differences, and a
per-class table of F1 with its differences, so what a change adds or costs, and to which
class, reads off one table. Only rows of the reference's own section are compared: rows
measured on other data have no meaningful difference to it. Differences are computed from the
means over seeds; partial and failed rows are listed with what they have.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from abawbench.boards.build import REPORTED, Leaderboard, Row, Section
from abawbench.boards.formats import FormatRegistry, csv_text, markdown_text, number, text_table
from abawbench.boards.html import esc, page
from abawbench.errors import ConfigError


@dataclass(frozen=True)
class AblationRow:
    label: str
    entry: str
    status: str
    mean: float | None
    std: float | None
    seeds: int
    delta: float | None
    sub_deltas: dict[str, float | None] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_class_delta: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Ablation:
    track: str
    primary_metric: str
    higher_is_better: bool
    reference: str
    section: str
    rows: tuple[AblationRow, ...]
    sub_score_names: tuple[str, ...] = ()
    classes: dict[str, list[str]] = field(default_factory=dict)
    dataset: str = ""
    origin: str = ""  # the section's data origin: CSV rows carry no title that would say it


def find_reference(board: Leaderboard, reference: str) -> tuple[Section, Row]:
    """The one measured row whose label (or entry id) is ``reference``, with its section."""
    matches = [(section, row) for section in board.sections if section.kind != REPORTED
               for row in section.rows if reference in (row.label, row.entry)]
    if not matches:
        labels = sorted({row.label for s in board.sections if s.kind != REPORTED for row in s.rows})
        raise ConfigError(f"--reference {reference!r}: no measured row has this label or entry id; "
                          f"labels: {', '.join(labels) or 'none'}")
    if len(matches) > 1:
        entries = ", ".join(row.entry for _section, row in matches)
        raise ConfigError(f"--reference {reference!r}: {len(matches)} rows have this label; "
                          f"give one entry id instead: {entries}")
    return matches[0]


def _difference(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else value - reference


def build_ablation(board: Leaderboard, reference: str) -> Ablation:
    """Every row of the reference's section, the reference first, with its differences."""
    section, base = find_reference(board, reference)
    base_classes = _per_class(board, base)
    rows = []
    for row in (base, *(r for r in section.rows if r.entry != base.entry)):
        per_class = _per_class(board, row)
        per_class_delta = {task: {name: _difference(value, base_classes.get(task, {}).get(name))
                                  for name, value in classes.items()} for task, classes in per_class.items()}
        rows.append(AblationRow(
            label=row.label or row.entry, entry=row.entry, status=row.status, mean=row.mean,
            std=row.std, seeds=row.seeds,
            delta=None if row is base or row.status == "failed" else _difference(row.mean, base.mean),
            sub_deltas={name: _difference(row.sub_scores.get(name), base.sub_scores.get(name))
                        for name in section.sub_score_names},
            per_class=per_class, per_class_delta=per_class_delta))
    classes: dict[str, list[str]] = {}
    for row in rows:
        for task, values in row.per_class.items():
            classes.setdefault(task, [name for name in values])
    return Ablation(track=board.track, primary_metric=board.primary_metric, higher_is_better=board.higher_is_better,
                    reference=base.label or base.entry, section=section.title, rows=tuple(rows),
                    sub_score_names=section.sub_score_names, classes=classes, dataset=section.dataset,
                    origin=section.origin)


def _per_class(board: Leaderboard, row: Row) -> dict[str, dict[str, float]]:
    details = board.details.get(row.entry, {}) if board.details else {}
    return dict(details.get("per_class", {}))


def score_text(row: AblationRow) -> str:
    """Mean ± std; one seed has no spread, so it says so rather than print ± 0."""
    if row.mean is None:
        return row.status
    return f"{row.mean:.4f} ± {row.std:.4f}" if row.seeds > 1 else f"{row.mean:.4f} (1 seed)"


def class_cell(row: AblationRow, task: str, name: str, reference: bool) -> str:
    """Per-class F1 with its difference to the reference in parentheses."""
    value = row.per_class.get(task, {}).get(name)
    if value is None:
        return "—"
    if reference:
        return f"{value:.3f}"
    delta = row.per_class_delta.get(task, {}).get(name)
    return f"{value:.3f} ({delta:+.3f})" if delta is not None else f"{value:.3f}"


def headline(ablation: Ablation) -> tuple[list[str], list[list[str]]]:
    """Header and display rows of the headline table."""
    header = (["entry", f"{ablation.primary_metric} (mean ± std)", "Δ vs reference"]
              + [f"Δ {name}" for name in ablation.sub_score_names] + ["seeds"])
    rows = []
    for position, row in enumerate(ablation.rows):
        name = f"{row.label} (reference)" if position == 0 else row.label
        rows.append([name, score_text(row), number(row.delta, signed=True)]
                    + [number(row.sub_deltas.get(n), signed=True) if position else "—" for n in ablation.sub_score_names]
                    + [str(row.seeds)])
    return header, rows


def per_class_table(ablation: Ablation, task: str) -> tuple[list[str], list[list[str]]]:
    names = ablation.classes[task]
    rows = [[row.label] + [class_cell(row, task, name, position == 0) for name in names]
            for position, row in enumerate(ablation.rows) if row.per_class.get(task)]
    return ["entry", *names], rows


def intro(ablation: Ablation) -> str:
    return (f"Track {ablation.track}: every row of the section '{ablation.section}' against the reference "
            f"'{ablation.reference}'. Δ: mean over seeds minus the reference's mean "
            f"({'higher' if ablation.higher_is_better else 'lower'} is better).")


ABLATION_FORMATS: FormatRegistry[Ablation] = FormatRegistry("ablation")


@ABLATION_FORMATS.register("markdown")
def render_markdown(ablation: Ablation) -> str:
    header, rows = headline(ablation)
    parts = [f"# Ablation: {markdown_text(ablation.track)}", "", markdown_text(intro(ablation)), "",
             text_table(rows, header, "github")]
    for task in ablation.classes:
        class_header, class_rows = per_class_table(ablation, task)
        parts += ["", f"Per-class F1 of task {markdown_text(task)} (mean over seeds; Δ vs reference in parentheses):",
                  "", text_table(class_rows, class_header, "github")]
    return "\n".join(parts) + "\n"


@ABLATION_FORMATS.register("csv")
def render_csv(ablation: Ablation) -> str:
    """One line per row and value: headline scores, sub-score and per-class differences. Every
    line names its dataset and origin, so a line cut out of the file still says when its data
    was generated."""
    lines = []
    for row in ablation.rows:
        start = [ablation.dataset, ablation.origin, row.label, row.entry, row.status]
        lines.append(start + ["score", ablation.primary_metric, row.mean, row.delta])
        for name, delta in row.sub_deltas.items():
            lines.append(start + ["sub_score", name, None, delta])
        for task, classes in row.per_class.items():
            for name, value in classes.items():
                lines.append(start + [f"per_class:{task}", name, value, row.per_class_delta.get(task, {}).get(name)])
    return csv_text(["dataset", "origin", "label", "entry", "status", "kind", "name", "value", "delta_vs_reference"],
                    lines)


@ABLATION_FORMATS.register("json")
def render_json(ablation: Ablation) -> str:
    return json.dumps({"format": "abawbench-ablation", **asdict(ablation)}, indent=2, ensure_ascii=False) + "\n"


@ABLATION_FORMATS.register("latex")
def render_latex(ablation: Ablation) -> str:
    from abawbench.boards.latex import ablation_tables

    return ablation_tables(ablation)


@ABLATION_FORMATS.register("html")
def render_html(ablation: Ablation) -> str:
    return page(f"Ablation: {ablation.track}", f"<h1>Ablation: {esc(ablation.track)}</h1>\n" + ablation_html(ablation))


def ablation_html(ablation: Ablation) -> str:
    """The ablation's tables as an HTML fragment (the report embeds it); deltas coloured by
    whether they are improvements."""
    def table(header: list[str], rows: list[list[str]], higher_is_better: bool, per_class: bool = False) -> str:
        head = "".join(f"<th>{esc(h)}</th>" for h in header)
        deltas = {column for column, name in enumerate(header) if name.startswith("Δ ")}
        body = "\n".join("<tr>" + "".join(_html_cell(cell, column, column in deltas or (per_class and column > 0),
                                                      higher_is_better)
                                           for column, cell in enumerate(row)) + "</tr>" for row in rows)
        return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'

    parts = [f'<p class="lead">{esc(intro(ablation))}</p>', table(*headline(ablation), ablation.higher_is_better)]
    for task in ablation.classes:
        # per-class cells hold F1 with its delta in parentheses; a higher F1 is better on every track
        parts += [f"<h4>Per-class F1 of task {esc(task)} (Δ vs reference in parentheses)</h4>",
                  table(*per_class_table(ablation, task), True, per_class=True)]
    return "\n".join(parts)


_DELTA = re.compile(r"^([+-]\d[\d.]*)$|\(([+-]\d[\d.]*)\)")


def _html_cell(text: str, column: int, is_delta: bool, higher_is_better: bool) -> str:
    """A table cell; a delta cell is green when it is an improvement over the reference and red
    when it is a loss (on a lower-is-better track a negative delta improves). Scores, seeds and
    zero deltas are not coloured."""
    if column == 0:
        return f'<td class="label">{esc(text)}</td>'
    tone = ""
    match = _DELTA.search(text) if is_delta else None
    if match:
        delta = float(match.group(1) or match.group(2))
        if delta:
            tone = " pos" if (delta > 0) == higher_is_better else " neg"
    return f'<td class="num{tone}">{esc(text)}</td>'
