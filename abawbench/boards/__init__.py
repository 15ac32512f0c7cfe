"""Boards: tables built from result files, rendered through a registry of formats, and compared.

- :mod:`~abawbench.boards.build`: result files -> sections of ranked rows (the ranking rules);
- :mod:`~abawbench.boards.formats`: the format registry and the leaderboard's formats;
- :mod:`~abawbench.boards.compare`: two sets of scores -> per-entry changes (the CI gate);
- :mod:`~abawbench.boards.inputs`: reading published numbers and leaderboard JSON documents;
- :mod:`~abawbench.boards.details`: per-entry details (per-class F1, confusion, scatter, provenance);
- :mod:`~abawbench.boards.latex`, :mod:`~abawbench.boards.html`: table floats for papers, standalone pages;
- :mod:`~abawbench.boards.report`, :mod:`~abawbench.boards.plots`: the report page and its SVG figures;
- :mod:`~abawbench.boards.ablation`: a section's rows against one reference row.

Boards only read results (:mod:`abawbench.results`); nothing here runs or trains anything.
"""

from abawbench.boards.build import Leaderboard, Row, Section, build_leaderboard
from abawbench.boards.compare import CHANGE_FORMATS, Change, Comparison, Tolerance, compare_scores, load_scores
from abawbench.boards.formats import LEADERBOARD_FORMATS, FormatRegistry, render
from abawbench.boards.inputs import load_references

__all__ = [
    "CHANGE_FORMATS",
    "Change",
    "Comparison",
    "FormatRegistry",
    "LEADERBOARD_FORMATS",
    "Leaderboard",
    "Row",
    "Section",
    "Tolerance",
    "build_leaderboard",
    "compare_scores",
    "load_references",
    "load_scores",
    "render",
]
