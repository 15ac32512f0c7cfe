"""Boards: leaderboard tables built from result files, rendered through a registry of formats, and compared."""
