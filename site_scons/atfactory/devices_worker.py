"""Writing per-device outputs: one chunk of a devices batch, and the devices.json ledger.

``python -m atfactory.devices_worker`` is the chunk process the build runs (one per chunk, so
``-j2`` uses both cores): it prepares the board exactly as the build did, then writes the
outputs of rows chunk, chunk + chunks, ... and one JSON line per device for the ledger.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
import sys
from typing import Optional, Sequence

from . import artifacts as art
from .devices import DEVICES_DIR, DeviceMaker
from .download_config import DownloadConfig, encode_download_config
from .errors import MAX_PROBLEMS, AtFactoryError, BoardError
from .fsutil import atomic_open, write_atomic
from .input_cache import use_input_cache
from .merge import merge_factory_image


def build_chunk(maker: DeviceMaker, release_dir: str, chunk: int, chunks: int, images: bool):
    """Write the outputs of rows chunk, chunk + chunks, ...; yield their ledger entries."""
    board = maker.board
    planned = [a for a in art.plan_board(board, maker.prepared.firmware, maker.formats) if a.offset is not None]
    for n, row in enumerate(maker.rows()):
        if n % chunks != chunk:
            continue
        device_id, files, _digests = maker.make(row)
        folder = os.path.join(release_dir, DEVICES_DIR, device_id)
        entries = []
        merge_list = []
        for a in planned:
            rel = a.targets[0]
            if rel in files:
                entries.append((a.offset, rel))
                merge_list.append((a.offset, os.path.join(folder, rel)))
            else:
                entries.append((a.offset, f"../../{rel}"))
                merge_list.append((a.offset, os.path.join(release_dir, rel)))
        files["download.config"] = (encode_download_config(DownloadConfig(
            board.flash_mode, board.flash_freq, board.flash_size, tuple(entries))), False)
        hashes = {}
        for rel, (data, secret) in sorted(files.items()):
            write_atomic(os.path.join(folder, rel), data, secret=secret)
            hashes[rel] = hashlib.sha256(data).hexdigest()
        if images and maker.prepared.firmware is not None:
            image = merge_factory_image(board.chip.name, board.flash_mode, board.flash_freq, board.flash_size,
                                        board.flash_size_bytes, merge_list)
            rel = art.factory_image_path(board)
            write_atomic(os.path.join(folder, rel), image, secret=any(s for _, s in files.values()))
            hashes[rel] = hashlib.sha256(image).hexdigest()
        yield {"device_id": device_id, "line": row.line, "outputs": hashes}


def chunk_ledger_path(release_dir: str, chunk: int, chunks: int) -> str:
    return os.path.join(release_dir, DEVICES_DIR, f".chunk-{chunk}-of-{chunks}.json")


def _chunk_entries(path: str):
    with open(path, encoding="utf-8") as f:
        for text in f:
            if text.strip():
                yield json.loads(text)


def write_ledger(board, release_dir: str, chunks: int, out_path: str) -> None:
    """devices.json, streamed: chunk ledgers are each in CSV order, so a merge keeps memory flat."""
    with atomic_open(out_path, text=True) as out:
        out.write(json.dumps({"board": board.id, "module": board.module_name})[:-1] + ', "devices": [\n')
        streams = [_chunk_entries(chunk_ledger_path(release_dir, c, chunks)) for c in range(chunks)]
        for n, entry in enumerate(heapq.merge(*streams, key=lambda e: e["line"])):
            out.write((",\n" if n else "") + json.dumps(entry, sort_keys=True))
        out.write("\n]}\n")


# --- the chunk worker: python -m atfactory.devices_worker ---------------------------------------

def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    from .plugins import make_session
    from .prepare import prepare_board

    p = argparse.ArgumentParser(prog="python -m atfactory.devices_worker")
    p.add_argument("--board", required=True)
    p.add_argument("--relative-to", required=True)
    p.add_argument("--devices", required=True)
    p.add_argument("--release", required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--chunks", type=int, required=True)
    p.add_argument("--firmware", default="")
    p.add_argument("--plugins", default="")
    p.add_argument("--sandbox", action="store_true")
    p.add_argument("--images", action="store_true")
    p.add_argument("--input-cache", default="")
    args = p.parse_args(argv)
    if args.input_cache:
        use_input_cache(args.input_cache)   # read only here: the scons process owns the file
    try:
        host, registry = make_session([d for d in args.plugins.split(",") if d])
        tables = host.board_tables()
        prepared = prepare_board(args.board, registry, host, relative_to=args.relative_to,
                                 firmware_override=args.firmware or None, extra_tables=tables, sandbox=args.sandbox)
        maker = DeviceMaker(prepared, args.devices, tables, checked=True, formats=host.formats())
        path = chunk_ledger_path(args.release, args.chunk, args.chunks)
        with atomic_open(path, text=True) as out:   # one JSON line per device, streamed
            for entry in build_chunk(maker, args.release, args.chunk, args.chunks, args.images):
                out.write(json.dumps(entry, sort_keys=True) + "\n")
    except BoardError as err:
        for problem in err.problems[:MAX_PROBLEMS]:
            sys.stderr.write(f"atfactory: error: {problem}\n")
        return 2
    except AtFactoryError as err:
        sys.stderr.write(f"atfactory: error: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
