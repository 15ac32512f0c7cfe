"""A test kit for plugin authors: abawbench's conformance checks as tests in your own suite.

Opt in from the ``conftest.py`` at the root of your tests (nothing loads it by itself, so
installing abawbench never changes another project's test run)::

    pytest_plugins = ["abawbench.testing"]
    abawbench_plugins = ["abawbench_tinycnn"]  # modules (or .py files) holding your hooks

Every check ``abawbench check-plugin`` runs becomes one test, named like its line
(``conftest.py::model tinycnn: builds``): a broken promise fails with its reason, a check that
cannot be tried is skipped with why, and an unexpected exception keeps its traceback. Your
modules are registered as plugins ``local:<module>`` next to abawbench's built-in plugins only
(whatever else is installed, and even if your package is installed too), so the checks measure
your code alone. Optional, in the same conftest: ``abawbench_conformance = {"models":
["tinycnn"], "data": "path/to/tree", "tracks": ["lsd"], "image_size": 64}`` (the fields of
:class:`abawbench.conformance.plan.ConformanceOptions`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from abawbench.conformance.core import Check, CheckFailed, CheckSkipped

MODULES_VARIABLE = "abawbench_plugins"
OPTIONS_VARIABLE = "abawbench_conformance"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """The conftest that names plugin modules is collected as the file of their checks."""
    if file_path.name != "conftest.py":
        return None
    conftest = _conftest_module(parent.config, file_path)
    if conftest is None or not getattr(conftest, MODULES_VARIABLE, None):
        return None
    return ConformanceFile.from_parent(parent, path=file_path, conftest=conftest)


def _conftest_module(config: pytest.Config, path: Path) -> Any:
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file and Path(file).resolve() == path.resolve():
            return plugin
    return None


class ConformanceFile(pytest.File):
    """The checks of every plugin module a conftest names."""

    def __init__(self, *, conftest: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conftest = conftest

    def collect(self) -> Iterator["ConformanceItem"]:
        from abawbench.conformance.plan import ConformanceOptions, plugin_checks

        workdir = Path(tempfile.mkdtemp(prefix="abawbench-testing-"))
        self.config.add_cleanup(lambda: shutil.rmtree(workdir, ignore_errors=True))
        settings = dict(getattr(self.conftest, OPTIONS_VARIABLE, {}) or {})
        options = ConformanceOptions(
            data=Path(settings["data"]) if settings.get("data") else None,
            tracks=tuple(settings.get("tracks", ())), models=tuple(settings.get("models", ())),
            image_size=int(settings.get("image_size", ConformanceOptions.image_size)), workdir=workdir,
        )
        host = builtin_host()
        for target in getattr(self.conftest, MODULES_VARIABLE):
            info = host.add_local_plugin(str(target))
            for check in plugin_checks(host, info.name, options):
                yield ConformanceItem.from_parent(self, name=check.title, check=check)


def builtin_host():
    """A plugin host with abawbench's built-in plugins only (the tracks and losses the checks
    need), strictly: a broken built-in is an error, not a silently thinner check."""
    from importlib.metadata import entry_points

    from abawbench.plugins import BUILTIN_ENTRY_POINT_PREFIX, ENTRY_POINT_GROUP, load_plugins

    builtins = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)
                if ep.name.startswith(BUILTIN_ENTRY_POINT_PREFIX)}
    return load_plugins(strict=True, allowed=builtins)


class ConformanceItem(pytest.Item):
    """One conformance check as a test."""

    def __init__(self, *, check: Check, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        try:
            self.check.run()
        except CheckSkipped as skipped:
            pytest.skip(str(skipped))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            return f"{self.check.title}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.check.title
