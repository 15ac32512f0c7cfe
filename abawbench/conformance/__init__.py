"""Conformance checks for plugins: does each thing a plugin registers keep its hook's contract?

Run by ``abawbench check-plugin NAME`` (:mod:`abawbench.commands.check_plugin`) and, as
parametrised tests, by the test kit :mod:`abawbench.testing`. One module per kind of plugin
item (:mod:`.models`, :mod:`.losses`, :mod:`.datasets`, :mod:`.ensembles`, :mod:`.tracks`,
:mod:`.augmentations`), on tiny generated data (:mod:`.tiny`); :mod:`.plan` picks the checks
of a plugin, :mod:`.core` runs one, :mod:`.runner` prints them. Nothing is imported here,
so that the command line's help does not pay for torch.
"""
