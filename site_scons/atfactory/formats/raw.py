"""User partitions: one file copied as it is."""
from __future__ import annotations

import hashlib
import os
from typing import List, Mapping, Optional, Sequence

from ..errors import ContentError, display_path
from ..fsutil import read_input, write_atomic
from . import Content, PartitionFormat, ReadContext


class RawFormat(PartitionFormat):
    kind = "raw"
    label = "RAW"
    builder = "AtfRawPartition"
    fallback = True

    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        if not sources:
            return None
        if len(sources) != 1:
            raise ContentError(f"{len(sources)} files; a user partition is one file copied as it is")
        return Content(self.kind, len(read_input(sources[0])), {}, tuple(sources))

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return read_input(sources[0])

    def decode(self, data: bytes, name: str = "") -> dict:
        used = data.rstrip(b"\xff")
        return {"kind": self.kind, "length": len(used), "sha256": hashlib.sha256(used).hexdigest()}

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        used = raw.rstrip(b"\xff")
        path = os.path.join(src_dir, f"{name}.bin")
        write_atomic(path, used)
        notes.append(f"{name}: raw content, {len(used)} bytes up to the last non-erased byte ({display_path(path)})")
        return [path]

    def describe(self, doc: dict) -> List[str]:
        return [f"raw data, {doc['length']} bytes, sha256 {doc['sha256']}"]

    def map_detail(self, doc: dict) -> str:
        return f"{doc['length']} bytes of data"
