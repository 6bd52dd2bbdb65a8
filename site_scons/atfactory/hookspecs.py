"""The hooks through which plugins take part in a build, in the order a build calls them.

Implement them in a module with ``from atfactory import hookimpl`` and ``@hookimpl``; accept
only the parameters you need.  Every hook is documented in docs/plugins.md (a test keeps the
two in step).
"""
from __future__ import annotations

import pluggy

PROJECT = "atfactory"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- while the command line is read ---------------------------------------------------------

@hookspec
def atfactory_register_formats(registry):
    """Add partition formats: what a partition holds, how it is built, read back and explained.

    Runs once per session, before any board is loaded; the built-in plugin registers the
    stock formats (factory_param, pki, ble_data, mfg_nvs, at_customize, plugin, raw) this way.

    :param registry: a :class:`atfactory.formats.FormatRegistrar`; call
        ``registry.add(format)`` with an instance of a subclass of
        :class:`atfactory.formats.PartitionFormat`.  A kind that is already registered is an
        error naming both plugins.
    :return: nothing.
    """


@hookspec
def atfactory_register_boards(registry):
    """Add board files, so that ``scons board=ID`` finds them like the stock boards.

    Runs once per build, before any board is loaded.

    :param registry: a :class:`atfactory.plugins.BoardRegistrar`; call
        ``registry.add(path, board_id=None)`` for each board file (``board_id`` defaults to
        the file stem).  An id that is already taken is an error naming both origins.
    :return: nothing.
    """


@hookspec
def atfactory_board_tables():
    """Declare the extra top-level tables this plugin reads from board files (``[vendor]``).

    Runs once per build, before any board is loaded.  Board files may only contain tables
    that atfactory or a plugin declares; any other key stays an error.

    :return: a dict ``{table name: checker or None}``.  A checker is called as
        ``checker(table: dict) -> list[str]`` for every board file that has the table and
        returns one message per problem (empty when the table is fine); each message is
        reported with the file and the table name.
    """


# --- once per board, after it is loaded and checked -----------------------------------------

@hookspec
def atfactory_configure_board(board):
    """Adjust or validate a loaded board before any of its targets is declared.

    :param board: the checked :class:`atfactory.board.Board` (read-only); its merged TOML,
        plugin tables included, is ``board.data``.
    :return: ``None``, or a dict shaped like a board file (``{"factory_param": {...}}``) that
        is laid over the board as if a file extended it; the result is checked again like
        any board.  Raise ``atfactory.errors.AtFactoryError`` (or any exception) to stop the
        build: the message names the plugin and this hook.
    """


@hookspec
def atfactory_register_partitions(board, registry):
    """Add AT partitions whose bytes the plugin makes.

    Runs after ``atfactory_configure_board``.  Added partitions appear in at_customize.bin,
    download.config and the factory image like the board's own, and every check of the board
    applies to them (name, alignment, region, overlaps, content size).

    :param board: the configured :class:`atfactory.board.Board`.
    :param registry: a :class:`atfactory.plugins.PartitionRegistrar`; call
        ``registry.add(name, subtype=..., size=..., build=..., type=0x40, offset=None,
        inputs=(), values=None, secret=False)``.  ``offset=None`` places the partition in the
        first free, aligned space of the at_customize region.  ``build(board, inputs)``
        returns the partition's bytes; ``inputs`` are the files it reads and ``values`` any
        JSON-able data its bytes depend on: SCons rebuilds the partition when either changes.
    :return: nothing.
    """


@hookspec
def atfactory_pre_merge(board, images):
    """Edit the final list of files merged into the factory image.

    Runs when the factory image is declared (only for boards with firmware).

    :param board: the :class:`atfactory.board.Board`.
    :param images: a list of ``(offset, path)`` tuples, sorted by offset; add, replace or
        remove entries in place.  Overlaps or entries past the end of flash are still errors.
    :return: nothing.
    """


@hookspec
def atfactory_post_build(board, outputs):
    """Act on a finished build: archive, sign, upload.

    Runs after every output of the board is written, whenever any of them changed.

    :param board: the :class:`atfactory.board.Board`.
    :param outputs: a dict from each output's path relative to the release folder
        (``"at_customize.bin"``, ``"customized_partitions/ble_data.bin"``, ...) to its
        absolute path; ``outputs["."]`` is the release folder itself.
    :return: nothing.
    """
