"""Built-in abawbench plugin: losses (under construction)."""
