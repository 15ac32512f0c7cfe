"""Built-in abawbench plugin: timm (under construction)."""
