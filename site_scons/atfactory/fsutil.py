"""Writing outputs: complete or absent, never half-written; secrets owner-readable from the start."""
from __future__ import annotations

import os
import re
import tempfile


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any build thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(path: str, data: bytes, secret: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place.

    A secret file is created with mode 0600 by the open call itself, so no other user can
    open it even for the moment before a chmod would have run.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix = "." + os.path.basename(path) + "."
    _remove_stale_temporaries(folder, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        # mkstemp creates 0600; widen ordinary outputs to what the umask allows, as open() would.
        if not secret:
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _remove_stale_temporaries(folder: str, prefix: str) -> None:
    """Temporary files of this output left by a build that was killed before its rename.

    Only one action writes a given output, so any such file is a leftover, never work in flight.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    # mkstemp's names: the prefix, 8 random characters, the suffix.  Matching exactly that keeps
    # "cfg.bin" from taking the temporary of "cfg.bin.bin" for its own.
    pattern = re.compile(re.escape(prefix) + r"[A-Za-z0-9_]{8}\.tmp$")
    for name in names:
        if pattern.match(name):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
