"""Built-in abawbench plugin: synthface (under construction)."""
