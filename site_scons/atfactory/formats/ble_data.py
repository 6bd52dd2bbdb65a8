"""ble_data.bin, the GATT table of AT v2, in the build and read-back."""
from __future__ import annotations

import os
from typing import List, Mapping, Optional, Sequence

from ..at_releases import AT_RELEASES, V2_RELEASES, is_v2
from .. import ble_data
from ..errors import AtFactoryError, ContentError, ExtractError
from ..fsutil import read_input, write_atomic
from . import Content, PartitionFormat, ReadContext

PARTITION = "ble_data"


def read_gatt(path: str) -> List[dict]:
    """The rows of a GATT CSV file.  Raises ContentError naming the file."""
    data = read_input(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ContentError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}, at offset {exc.start}); "
                           "expected a GATT CSV in UTF-8", path) from None
    try:
        return ble_data.read_gatt_csv(text)
    except ContentError as err:
        raise ContentError(err.message, path) from None


class BleDataFormat(PartitionFormat):
    kind = "ble_data"
    label = "GATT"
    builder = "AtfBleData"

    def claims(self, name: str, at_version: str) -> bool:
        return name == PARTITION and is_v2(at_version)

    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        if not sources:
            return None
        if len(sources) != 1:
            raise ContentError(f"{len(sources)} files; ble_data is built from exactly one GATT CSV")
        # ESP-AT 2.0 and 2.1 write each row's keys in Python 2's dict order (spec only then, so
        # that the spec of every later release stays as it was)
        release = AT_RELEASES.get(ctx.at_version)
        spec = {"key_order": list(ble_data.PYTHON2_KEY_ORDER)} if release and release.gatt_python2_order else {}
        size = len(self.render(spec, sources))
        return Content(self.kind, size, spec, tuple(sources))

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return ble_data.encode_ble_data(read_gatt(sources[0]), spec.get("key_order"))

    def detect(self, data: bytes) -> bool:
        return data[2:4] == ble_data.MAGIC

    def decode(self, data: bytes, name: str = "") -> dict:
        return {"kind": self.kind, "rows": [dict(r) for r in ble_data.decode_ble_data(data)]}

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        # Rows whose keys are not in Python 2's order were not written by ESP-AT 2.0 or 2.1.
        if all(tuple(r) == ble_data.PYTHON2_KEY_ORDER for r in doc["rows"]):
            return None
        return frozenset(v for v in V2_RELEASES if not AT_RELEASES[v].gatt_python2_order)

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        rows = ble_data.decode_ble_data(raw)
        text = ble_data.write_gatt_csv(rows, columns=list(rows[0].keys()) if rows else None)
        try:
            rebuilt = ble_data.encode_ble_data(ble_data.read_gatt_csv(text))
        except AtFactoryError as err:
            raise ExtractError(f"partition {name}: its GATT table does not pass the board checks: {err}") from None
        if rebuilt != raw[:len(rebuilt)] or raw[len(rebuilt):].strip(b"\xff"):
            raise ExtractError(f"partition {name}: its GATT JSON cannot be written as a CSV that rebuilds it byte for byte")
        path = os.path.join(src_dir, "ble_data.csv")
        write_atomic(path, text.encode("ascii"))
        return [path]

    def describe(self, doc: dict) -> List[str]:
        lines = ["index uuid_len uuid                             perm val_max_len val_cur_len value"]
        for r in doc["rows"]:
            lines.append(f"{r['index']:>5} {r['uuid_len']:>8} {r['uuid']:<32} 0x{r['perm']:02x} {r['val_max_len']:>11} "
                         f"{r['val_cur_len']:>11} {r['value']}")
        return lines

    def map_detail(self, doc: dict) -> str:
        return f"GATT, {len(doc.get('rows', []))} rows"
