"""Built-in abawbench plugin: abaw4 (under construction)."""
