"""Output formats: a registry of pure render functions, one per format, and the leaderboard's five.

A format is one function from a document to text plus the one line that registers it, so a new
output touches nothing else: ``abawbench leaderboard --format`` offers what
:data:`LEADERBOARD_FORMATS` holds, in registration order. The same :class:`FormatRegistry`
serves every kind of board (a leaderboard, a comparison report, a plugin's own table), and the
helpers below keep their shared conventions (how a missing number or a CSV line looks) in one
place. Render functions do no I/O: callers print the text or write it atomically.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any, Callable, Generic, Sequence, TypeVar

from abawbench.boards.build import FAILED, REPORTED, Leaderboard, Row, Section
from abawbench.boards.latex import render_latex as latex_tables
from abawbench.errors import ConfigError

Document = TypeVar("Document")
Renderer = Callable[[Document], str]

MISSING = "—"
LEADERBOARD_JSON_FORMAT = "abawbench-leaderboard"
"""The ``format`` field of a leaderboard JSON document: how ``compare`` recognises one."""


class FormatRegistry(Generic[Document]):
    """Named render functions for one kind of document, in the order they were registered."""

    def __init__(self, document: str) -> None:
        self.document = document
        self._renderers: dict[str, Renderer] = {}

    def register(self, name: str) -> Callable[[Renderer], Renderer]:
        """Decorator registering a render function as format ``name``."""

        def add(render: Renderer) -> Renderer:
            if name in self._renderers:
                raise ValueError(f"{self.document} format {name!r} is registered twice")
            self._renderers[name] = render
            return render

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(self._renderers)

    def render(self, document: Document, fmt: str) -> str:
        """``document`` as text in format ``fmt``; an unknown format is a :class:`ConfigError`."""
        if fmt not in self._renderers:
            raise ConfigError(f"unknown {self.document} format {fmt!r}; choose from {', '.join(self.names())}")
        return self._renderers[fmt](document)


# --------------------------------------------------------------------------- shared conventions


def number(value: float | None, *, signed: bool = False) -> str:
    """A score as every board shows it: four decimals, a sign for deltas, a dash when missing."""
    if value is None:
        return MISSING
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def markdown_text(text: str) -> str:
    """``text`` safe inside a Markdown (GitHub) table or heading: raw HTML is shown, not
    rendered, a ``|`` stays in its cell, and a line break cannot end the row. ``&`` stays as
    typed: without ``<`` it cannot open markup, and committed tables keep their bytes."""
    escaped = str(text).replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(escaped.splitlines())


def text_table(rows: Sequence[Sequence[str]], header: Sequence[str], style: str) -> str:
    """A tabulate table of display strings; strings stay as given (no number parsing, so
    "0.5000" keeps its digits and an entry named like a number stays text). Tabulate escapes
    LaTeX cells itself; Markdown ("github") cells are escaped here."""
    from tabulate import tabulate  # imported when rendering, not when the command line is built

    if style == "github":
        rows = [[markdown_text(cell) for cell in row] for row in rows]
        header = [markdown_text(cell) for cell in header]
    return tabulate(rows, headers=list(header), tablefmt=style, disable_numparse=True)


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: ``None`` is empty, and a string that a
    spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return
    first) gets a leading ``'``. Numbers, and strings that are plain numbers (a signed delta
    such as ``-0.0100``), stay as they are."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_text(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """CSV with ``\\n`` line ends, the same on every platform; every cell through :func:`csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(value) for value in header])
    writer.writerows([csv_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


# --------------------------------------------------------------------------- leaderboard cells

LEADERBOARD_FORMATS: FormatRegistry[Leaderboard] = FormatRegistry("leaderboard")


def render(board: Leaderboard, fmt: str) -> str:
    """The leaderboard in one of :data:`LEADERBOARD_FORMATS`."""
    return LEADERBOARD_FORMATS.render(board, fmt)


def headers(board: Leaderboard, section: Section) -> list[str]:
    if section.kind == REPORTED:
        return ["rank", "label", "split", board.primary_metric, "source", "data"]
    return (["rank", "label", "backbone", "protocol", "loss", f"{board.primary_metric} (mean ± std)",
             "95% CI"] + list(section.sub_score_names) + ["seeds"]
            + [header for header, _value in _selection_columns(section)] + ["date", "abawbench", "note"])


def _selection_columns(section: Section) -> list[tuple[str, Callable[[Row], str]]]:
    """The statistics columns: the split a row's epochs and thresholds were chosen on, when the
    section's rows differ there (when they agree, the section's title says it once), and
    whether a paired bootstrap can tell a row from the section's best row, when tested."""
    columns: list[tuple[str, Callable[[Row], str]]] = []
    if len({r.selection for r in section.rows if r.selection}) > 1:
        columns.append(("selected on", lambda r: r.selection or MISSING))
    if any(r.not_worse_than_best is not None for r in section.rows):
        columns.append(("vs best", tie_with_best))
    return columns


def tie_with_best(row: Row) -> str:
    """``best`` for the section's best row, ``tie`` when a paired bootstrap cannot tell a row
    from it, ``worse`` when it can, a dash when untested."""
    tie = row.not_worse_than_best
    if tie is None:
        return MISSING
    return ("best" if row.rank == "1" else "tie") if tie else "worse"


def published_score(row: Row) -> str:
    """A reported number as its source printed it; four decimals only for rows without it."""
    return row.published or number(row.mean)


def cells(section: Section, row: Row) -> list[str]:
    """Display strings of a row, in :func:`headers` order."""
    if section.kind == REPORTED:
        return [row.rank, row.label, row.split, published_score(row), row.source, row.data]
    if row.status == FAILED:
        score, interval = FAILED, MISSING
    else:
        score = f"{row.mean:.4f} ± {row.std:.4f}" if row.seeds > 1 else f"{row.mean:.4f}"
        interval = (f"[{row.ci_low:.4f}, {row.ci_high:.4f}]" if row.ci_low is not None
                    and row.ci_high is not None else MISSING)
    subs = [number(row.sub_scores.get(name)) for name in section.sub_score_names]
    seeds = str(row.seeds) if row.seeds == row.seeds_total else f"{row.seeds}/{row.seeds_total}"
    return ([row.rank, row.label, row.backbone, row.protocol, row.loss, score, interval] + subs
            + [seeds] + [value(row) for _header, value in _selection_columns(section)]
            + [row.date, row.version, row.note])


def intro(board: Leaderboard) -> str:
    order = "higher is better" if board.higher_is_better else "lower is better"
    return (f"Track {board.track}: {board.primary_metric} on validation ({order}). Mean ± std over "
            "seeds; 95% CI: percentile bootstrap over the track's unit (mtl: videos, lsd: images), all "
            "seeds' resamples pooled (docs/statistics.md). Sections never share ranks.")


# --------------------------------------------------------------------------- leaderboard formats


@LEADERBOARD_FORMATS.register("markdown")
def render_markdown(board: Leaderboard) -> str:
    parts = [f"# Leaderboard: {markdown_text(board.track)}", "", markdown_text(intro(board))]
    if not board.sections:
        parts += ["", "No results."]
    for section in board.sections:
        table = text_table([cells(section, r) for r in section.rows], headers(board, section), "github")
        parts += ["", f"## {markdown_text(section.title)}", "", table]
        links = [f"- {markdown_text(r.source)}: <{r.url}>" for r in section.rows if r.url]
        if links:
            parts += ["", "Sources:", "", *dict.fromkeys(links)]
    return "\n".join(parts) + "\n"


@LEADERBOARD_FORMATS.register("latex")
def render_latex(board: Leaderboard) -> str:
    """Table floats a paper can include (:mod:`abawbench.boards.latex`), compact columns."""
    return latex_tables(board)


@LEADERBOARD_FORMATS.register("html")
def render_html(board: Leaderboard) -> str:
    """A standalone page (:mod:`abawbench.boards.html`): sortable tables, intervals drawn."""
    from abawbench.boards.html import render_html as html_page  # html builds on this module's cells

    return html_page(board)


@LEADERBOARD_FORMATS.register("csv")
def render_csv(board: Leaderboard) -> str:
    """One table of raw values; the section columns keep rows of different data apart, and
    ``origin`` keeps a generated tree read as a real dataset's layout from passing for it."""
    subs = sorted({n for s in board.sections for n in s.sub_score_names})
    header = (["section", "dataset", "origin", "fingerprint", "rank", "label", "entry", "status", "backbone", "protocol",
               "loss", board.primary_metric, "std", "ci_low", "ci_high"] + subs
              + ["seeds", "seeds_total", "date", "abawbench", "split", "source", "data", "note",
                 "published", "url", "selection", "not_worse_than_best"])
    rows = []
    for section in board.sections:
        for row in section.rows:
            values = [section.kind, section.dataset, section.origin, section.fingerprint, row.rank, row.label, row.entry, row.status,
                      row.backbone, row.protocol, row.loss, row.mean, row.std, row.ci_low, row.ci_high]
            values += [row.sub_scores.get(name) for name in subs]
            values += [row.seeds, row.seeds_total, row.date, row.version, row.split, row.source, row.data, row.note,
                       row.published, row.url, row.selection, row.not_worse_than_best]
            rows.append(values)
    return csv_text(header, rows)


@LEADERBOARD_FORMATS.register("json")
def render_json(board: Leaderboard) -> str:
    """Machine-readable; also what ``abawbench compare`` reads as OLD or NEW. Rows are indented
    for readable diffs; each entry's details (hundreds of scatter points) take one line."""
    document = leaderboard_dict(board)
    details = document.pop("details")
    text = json.dumps(document, indent=2, ensure_ascii=False)
    lines = [f"    {json.dumps(entry, ensure_ascii=False)}: {json.dumps(value, ensure_ascii=False)}"
             for entry, value in details.items()]
    block = "{\n" + ",\n".join(lines) + "\n  }" if lines else "{}"
    return text[: -len("\n}")] + f',\n  "details": {block}\n}}\n'



def leaderboard_dict(board: Leaderboard) -> dict[str, Any]:
    return {
        "format": LEADERBOARD_JSON_FORMAT,
        "track": board.track,
        "primary_metric": board.primary_metric,
        "higher_is_better": board.higher_is_better,
        "abawbench_version": board.version,
        "sections": [
            {"kind": s.kind, "title": s.title, "dataset": s.dataset, "fingerprint": s.fingerprint,
             "origin": s.origin, "sub_score_names": list(s.sub_score_names), "rows": [asdict(r) for r in s.rows]}
            for s in board.sections
        ],
        # what the report and the ablation view need beyond the rows (abawbench.boards.details)
        "details": dict(board.details),
    }
