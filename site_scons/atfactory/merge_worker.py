"""Factory images merged in worker processes, so that a parallel build uses every core.

SCons runs a ``-j N`` build's Python actions in N threads of one process, under one GIL; the
factory images are the largest work of a cold build (esptool's merge, a few MB written and
hashed per board) and independent of each other.  ``MergePool`` hands each merge to one of up
to N worker processes (``python -m atfactory.merge_worker``), started at the first merge; the
calling thread waits on a pipe meanwhile, which leaves the GIL to the other threads.

A worker merges with :func:`atfactory.merge.merge_factory_image` (esptool's merge, as in
process), writes the image with :func:`atfactory.fsutil.write_atomic`, and answers with the
image's stamp and its digests: the SHA-256 the manifest lists and the content signature SCons
stores, each computed once from the bytes it wrote instead of reading 4 MB back per digest.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import queue
import subprocess
import sys
import threading
from typing import List, Sequence, Tuple

from .errors import AtFactoryError, MergeError
from .stamps import stamp_of


def merge_job(path: str, secret: bool, chip: str, flash: Sequence[str], flash_bytes: int,
              entries: Sequence[Tuple[int, str]], content_hash: str) -> dict:
    """What a worker does for one image; also run in process where there are no workers."""
    from .fsutil import write_atomic
    from .merge import merge_factory_image

    mode, freq, size = flash
    data = merge_factory_image(chip, mode, freq, size, flash_bytes, list(entries))
    write_atomic(path, data, secret=secret)
    sha256 = hashlib.sha256(data).hexdigest()
    csig = sha256 if content_hash == "sha256" else hashlib.new(content_hash, data, usedforsecurity=False).hexdigest()
    return {"stamp": stamp_of(path), "sha256": sha256, "csig": csig}


def _answer(job: dict) -> tuple:
    try:
        return ("ok", merge_job(**job))
    except AtFactoryError as err:
        return ("error", str(err))
    except Exception as exc:   # an OSError writing the image, say: the build fails on it with its text
        return ("crash", f"{type(exc).__name__}: {exc}")


def serve() -> None:
    """The worker: (job) pickles in on stdin, (status, result) pickles out on the original stdout."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)   # anything printed goes to stderr, never into the answers
    sys.stdout = sys.stderr
    source = sys.stdin.buffer
    try:
        from esptool.cmds import merge_bin  # noqa: F401  (imported while the build makes the partitions)
        while True:
            try:
                job = pickle.load(source)
            except EOFError:
                return
            pickle.dump(_answer(job), channel, protocol=pickle.HIGHEST_PROTOCOL)
            channel.flush()
    except KeyboardInterrupt:   # Ctrl-C reaches the whole process group: the scons process reports it
        return


class _Worker:
    def __init__(self):
        site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        environ = dict(os.environ)
        environ["PYTHONPATH"] = site + (os.pathsep + environ["PYTHONPATH"] if environ.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "atfactory.merge_worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=environ)

    def call(self, job: dict) -> tuple:
        try:
            pickle.dump(job, self.proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            self.proc.stdin.flush()
            return pickle.load(self.proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            self.proc.kill()
            return ("dead", f"the merge worker process ended (exit status {self.proc.wait()})")

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()


class MergePool:
    """Up to ``size`` worker processes, each started when a merge finds none idle."""

    def __init__(self, size: int):
        self.size = size
        self.idle: "queue.SimpleQueue[_Worker]" = queue.SimpleQueue()
        self.started: List[_Worker] = []
        self.lock = threading.Lock()

    def merge(self, **job) -> dict:
        """merge_job(**job) in a worker; raises MergeError (the worker's message) where it would."""
        worker = self._take()
        status, result = worker.call(job)
        if status == "dead":   # the next merge starts another
            with self.lock:
                self.started.remove(worker)
        else:
            self.idle.put(worker)
        if status == "ok":
            return result
        raise MergeError(result) if status == "error" else RuntimeError(f"factory image: {result}")

    def start(self) -> None:
        """Start every worker now, without waiting for them (each imports esptool meanwhile)."""
        with self.lock:
            while len(self.started) < self.size:
                worker = _Worker()
                self.started.append(worker)
                self.idle.put(worker)

    def _take(self) -> _Worker:
        try:
            return self.idle.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if len(self.started) < self.size:
                worker = _Worker()
                self.started.append(worker)
                return worker
        return self.idle.get()

    def close(self) -> None:
        with self.lock:
            workers, self.started = self.started, []
        for w in workers:
            w.close()


_POOL: List[MergePool] = []
_POOL_LOCK = threading.Lock()


def pool(size: int) -> MergePool:
    """The process's pool, of ``size`` workers at most (the size of the first call); closed at exit."""
    with _POOL_LOCK:
        if not _POOL:
            import atexit
            _POOL.append(MergePool(size))
            atexit.register(_POOL[0].close)
    return _POOL[0]


if __name__ == "__main__":
    serve()
