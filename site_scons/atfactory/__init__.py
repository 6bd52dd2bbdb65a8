"""atfactory: declarative board files to every ESP-AT customized binary.

A plain library with no SCons import: the board model (``board``), one module per binary
format with its encoder and decoder side by side (``factory_param``, ``partition_table``,
``pki``, ``ble_data``, ``download_config``), the plan of a board's outputs (``artifacts``)
and the errors they raise (``errors``).  The SCons glue is the tool in ``atfactory/site_tools``, which only SCons loads.
"""
__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl"]


def __getattr__(name):
    # hookimpl, the marker plugins decorate their hooks with, imports pluggy: only when asked for
    # (a no-op build from a cached plan imports atfactory.site_tools and nothing else of the library)
    if name == "hookimpl":
        from .hookspecs import hookimpl
        return hookimpl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
