"""One module per subcommand (see :mod:`abawbench.cli`), plus :mod:`.config_flags`, which
generates a command's flags from the configuration model."""

import argparse
from pathlib import Path

from abawbench.errors import ConfigError


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help only when there is one worth reading: not for
    required options, options whose default is None (their help says what happens), or help
    that already states its default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def output_file(path: Path, flag: str, example: str) -> Path:
    """``path`` when it can name a file to write; a folder (``.``, an existing directory) is
    refused up front with the flag's name, so the user is not left with a traceback from deep
    inside the writer. ``example`` is the file name suggested inside that folder."""
    if path.is_dir() or path.name in ("", ".", ".."):
        raise ConfigError(f"{flag} {path}: is a folder; give a file name, e.g. {path / example}")
    return path
