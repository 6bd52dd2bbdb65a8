"""A file's stamp: its size, modification and change times in ns and inode, which a file
rewritten in any way since has another of -- unless it changed within one tick of the file
system's clock of being stamped, which is why a file changed less than ``SETTLED_NS`` before a
run is not trusted by its stamp (git's "racily clean" files).

Standard library only: the cached build plan (``site_tools/atfactory_plan``) imports it in a
no-op build, which imports nothing else of atfactory.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

SETTLED_NS = 2_000_000_000   # a file changed this recently is not trusted by its stamp


def stamp_fields(st: os.stat_result) -> Tuple[int, int, int, int]:
    """(size, mtime_ns, ctime_ns, inode): what a stamp is made of."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_stamp(st: os.stat_result) -> str:
    """The stamp of a stat result as stored (inputs.json, build plans): "size:mtime:ctime:inode"."""
    return "%d:%d:%d:%d" % stamp_fields(st)


def stamp_of(path: str) -> Optional[str]:
    """The stamp of ``path``; None when it cannot be stat'ed (missing, say)."""
    try:
        return file_stamp(os.stat(path))
    except OSError:
        return None
