"""One module per subcommand (see :mod:`abawbench.cli`), plus :mod:`.config_flags`, which
generates a command's flags from the configuration model."""
