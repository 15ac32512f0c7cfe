"""Statistics around the scores: the cluster bootstrap of a track's scores (vectorised over
resamples), intervals pooled over seeds, and the paired test against a section's best row.
What is measured and how to re-measure it: docs/statistics.md."""
