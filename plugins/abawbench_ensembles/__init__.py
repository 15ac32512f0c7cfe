"""Built-in abawbench plugin: ensembles (under construction)."""
