"""atfactory: declarative board files to every ESP-AT customized binary.

A plain library with no SCons import: the board model (``board``), one module per binary
format with its encoder and decoder side by side (``factory_param``, ``partition_table``,
``pki``, ``ble_data``, ``download_config``), the plan of a board's outputs (``artifacts``)
and the errors they raise (``errors``).  The SCons glue is the tool in ``atfactory/site_tools``, which only SCons loads.
"""
__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402  - the marker plugins decorate their hooks with

__all__ = ["__version__", "hookimpl"]
