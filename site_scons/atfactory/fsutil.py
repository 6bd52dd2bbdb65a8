"""Reading inputs and writing outputs.

Inputs are regular files only: reading a FIFO waits for a writer and reading /dev/zero never
ends, so both are refused before they are opened.  Outputs are complete or absent, never
half-written, and secrets are owner-readable from the first byte.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from typing import IO, Iterator, List, Sequence

from .errors import InputError


def _read_umask() -> int:
    # os.umask can only be read by setting it; do it once, at import, before any build thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


# A name read from an input that becomes part of an output path: '/'-separated names of
# printable characters, none of them '.', '..' or empty, nothing a disk reads as a drive or root.
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f\\:*?"<>|]')


def relative_name_problem(rel: str) -> str:
    """Why ``rel`` (a name from an input) is not a relative path confined to its folder; "" when it is."""
    if not isinstance(rel, str) or not rel:
        return "an empty name"
    if _UNSAFE_CHARS.search(rel):
        return "holds a control character or one of \\ : * ? \" < > |"
    if rel.startswith("/"):
        return "an absolute path"
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return "has an empty, '.' or '..' component"
    return ""


def inside(path: str, root: str) -> bool:
    """Whether ``path``, symbolic links resolved, is ``root`` or under it."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_regular_file(path: str, expected: str = "a file") -> None:
    """Raise InputError unless ``path`` is a regular file (never a folder, FIFO or device, which
    would be read forever or not at all)."""
    try:
        mode = os.stat(path).st_mode   # one stat: symbolic links followed, as isdir would
    except FileNotFoundError:
        if os.path.islink(path):
            raise InputError(f"is a symbolic link to {os.readlink(path)}, which does not exist", path) from None
        raise InputError("no such file", path) from None
    except (OSError, ValueError) as exc:   # ValueError: a NUL in the path
        raise InputError(f"cannot be read ({getattr(exc, 'strerror', None) or exc})", path) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"is a folder; expected {expected}", path)
    if not stat.S_ISREG(mode):
        raise InputError(f"is not a regular file (a device, FIFO or socket); expected {expected}", path)


def read_input(path: str) -> bytes:
    """The bytes of a regular file.  Raises InputError saying why not (path in ``.path``)."""
    check_regular_file(path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", path) from None


@contextlib.contextmanager
def atomic_open(path: str, secret: bool = False, text: bool = False) -> Iterator[IO]:
    """A file object whose content appears at ``path`` only when the block ends without error.

    The file is a temporary beside ``path``, renamed into place at the end.  A secret file is
    created with mode 0600 by the open call itself, so no other user can open it even for the
    moment before a chmod would have run; other files get what the umask allows, as open()
    would give them.
    """
    folder = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    if not _made_here(folder):
        _remove_stale_temporaries(folder, prefix)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=folder)
    try:
        if not secret:
            os.fchmod(fd, 0o666 & ~_UMASK)
        with (os.fdopen(fd, "w", encoding="utf-8", newline="\n") if text else os.fdopen(fd, "wb")) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: str, data: bytes, secret: bool = False) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_open`."""
    with atomic_open(path, secret=secret) as f:
        f.write(data)


_MADE = set()   # folders this process created: no build killed before it left temporaries in them


def missing_folders(folder: str) -> List[str]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def remove_empty_folders(folders: Sequence[str]) -> None:
    """Remove ``folders`` in order while each is empty: what ``missing_folders`` listed, once
    whatever was to be written into them was not."""
    for folder in folders:
        _MADE.discard(folder)
        try:
            os.rmdir(folder)
        except OSError:
            return


def _made_here(folder: str) -> bool:
    """Make ``folder`` (and its parents) where missing; True when this process made it.  A cold
    build writes hundreds of outputs into folders it has just made: none needs to be listed."""
    if folder in _MADE:
        return True
    try:
        os.mkdir(folder)
    except FileExistsError:
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)   # raises as it always did for a file in the way
        return False
    except FileNotFoundError:   # its parent is missing too
        os.makedirs(folder, exist_ok=True)
    _MADE.add(folder)
    return True


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
    pattern = re.compile(re.escape(prefix) + r"[A-Za-z0-9_]{8}\.tmp\Z")
    for name in names:
        if pattern.match(name):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
