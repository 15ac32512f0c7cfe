"""One module per subcommand (see :mod:`abawbench.cli`), plus :mod:`.config_flags`, which
generates a command's flags from the configuration model."""

import argparse


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help only when there is one worth reading: not for
    required options, options whose default is None (their help says what happens), or help
    that already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)
