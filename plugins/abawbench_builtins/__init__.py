"""abawbench's built-in plugins, one subpackage each.

They register through the ``abawbench`` entry-point group exactly as a third-party plugin does
(entry points ``builtin.<name>``); the core never imports them. The package name
``abawbench_builtins`` and the entry-point prefix ``builtin.`` are reserved for them, so no
contributor's ``abawbench_<name>`` package can shadow a built-in (see CONTRIBUTING.md).
"""
