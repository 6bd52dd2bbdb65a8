"""atfactory's own contributions, made through the same hooks as any plugin."""
from __future__ import annotations

import os

from .hookspecs import hookimpl

NAME = "atfactory"
# The stock boards are package data: atfactory/boards/ in a checkout (site_scons/) and in an installed wheel alike.
STOCK_BOARDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boards")


@hookimpl(tryfirst=True)
def atfactory_register_formats(registry):
    """The stock partition formats; registered first, so that vendors' formats are asked after them."""
    from .formats import stock_formats

    for fmt in stock_formats():
        registry.add(fmt)


@hookimpl(tryfirst=True)
def atfactory_register_boards(registry):
    """The stock boards of atfactory/boards/ (subfolders such as layouts/ hold no boards)."""
    registry.add_folder(STOCK_BOARDS)
