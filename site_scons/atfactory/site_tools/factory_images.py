"""The factory image targets: merged in worker processes (``atfactory.merge_worker``) when the
build runs parallel jobs, in process otherwise, and hashed once.

SCons computes a built file's content signature by reading it back, in the main thread; for
a factory image (a few MB each, one per board) the merge already had the bytes, so the digest
comes from there.  The image's node is a ``FactoryImageFile``: it takes that signature while
the file's stamp (size, times, inode) is the one the merge saw, and hashes the file as every
File does otherwise.  The manifest's SHA-256 of the image comes from the merge likewise.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import SCons.Node.FS
import SCons.Util

from atfactory.manifest import remember_sha256
from atfactory.merge_worker import merge_job, pool
from atfactory.stamps import stamp_of

_KNOWN: Dict[str, Tuple[str, str]] = {}   # image path -> (stamp, content signature) of what was merged


class FactoryImageFile(SCons.Node.FS.File):
    __slots__ = ()

    def get_csig(self) -> str:
        ninfo = self.get_ninfo()
        try:
            return ninfo.csig
        except AttributeError:
            pass
        path = self.get_abspath()
        known = _KNOWN.get(path)
        if known is not None and known[0] == stamp_of(path):
            ninfo.csig = known[1]
            return known[1]
        return super().get_csig()


_STATE = {"declared": 0, "started": False}


def adopt(node):
    """Make a File node (a factory image target) a FactoryImageFile; the same slots, one method more."""
    if type(node) is SCons.Node.FS.File:
        node.__class__ = FactoryImageFile
    _STATE["declared"] += 1
    return node


def _workers(jobs: int) -> int:
    return max(1, jobs - 1)   # jobs - 1: the scons process itself keeps a core busy with every other target


def start_workers(jobs: int) -> None:
    """Called by every action: at the first, with images declared and jobs > 1, the workers start
    (a build that builds nothing starts none), ready by the time the first image's inputs are."""
    if not _STATE["started"]:
        _STATE["started"] = True
        if _STATE["declared"] and jobs > 1:
            pool(_workers(jobs)).start()


def build_image(path: str, spec: dict, sources: Sequence[str], secret: bool, jobs: int) -> None:
    """Merge the image of ``spec`` (see artifacts.plan_factory_image) into ``path``; MergeError
    as the merge raises it.  ``jobs`` > 1 (scons -j): in a worker process."""
    job = dict(path=path, secret=secret, chip=spec["chip"], flash=list(spec["flash"]),
               flash_bytes=spec["flash_bytes"], entries=list(zip(spec["offsets"], sources)),
               content_hash=SCons.Util.get_current_hash_algorithm_used())
    result = pool(_workers(jobs)).merge(**job) if jobs > 1 else merge_job(**job)
    _KNOWN[path] = (result["stamp"], result["csig"])
    remember_sha256(path, result["stamp"], result["sha256"])
