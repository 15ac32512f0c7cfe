"""What the core knows about data, whatever the dataset: sample indexes, problem records and
the strict / skip-bad decision, fingerprints, the parse cache, the whole-dataset check and the
contact sheet. The readers of particular file layouts live in dataset plugins."""
