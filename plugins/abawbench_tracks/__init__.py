"""Built-in abawbench plugin: tracks (under construction)."""
