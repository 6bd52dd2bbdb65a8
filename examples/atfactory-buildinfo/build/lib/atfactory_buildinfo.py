"""An installable atfactory plugin: a ``build_info`` AT partition on boards that ask for it.

A board opts in with a table of its own:

    [buildinfo]
    label = "rev B, line 3"

and gets a 4 KiB partition ``build_info`` (type 0x40, subtype 0x70, placed in free space)
holding ``board=<id>;module=<name>;label=<label>`` as ASCII, readable with AT+SYSFLASH.
Install with ``pip install ./examples/atfactory-buildinfo``; ``scons plugins`` then lists it.
"""
from atfactory import hookimpl

__version__ = "1.0.0"


def _check(table):
    problems = [f"unknown key {k!r}; accepted: label" for k in table if k != "label"]
    if not isinstance(table.get("label", ""), str):
        problems.append("label: expected a string")
    return problems


@hookimpl
def atfactory_board_tables():
    return {"buildinfo": _check}


def _build(board, inputs):
    label = board.data["buildinfo"].get("label", "")
    return f"board={board.id};module={board.module_name};label={label}".encode("ascii")


@hookimpl
def atfactory_register_partitions(board, registry):
    if "buildinfo" in board.data:
        registry.add("build_info", subtype=0x70, size="4K", build=_build,
                     values={"label": board.data["buildinfo"].get("label", ""), "module": board.module_name})
