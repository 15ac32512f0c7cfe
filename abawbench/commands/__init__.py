"""One module per subcommand; see :mod:`abawbench.cli`."""
