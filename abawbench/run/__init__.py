"""The run: plan (entries, dataset, data), features of the run's backbones, and the runner
(resume, run one entry, write its result)."""
