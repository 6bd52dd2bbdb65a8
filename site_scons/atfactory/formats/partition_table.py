"""at_customize.bin, the AT firmware's table of its own partitions, as a build artifact.

Reading partition tables back (the main table at 0x8000 and at_customize.bin) is part of
reading a whole image (``readback``); here is what the build and ``verify`` need.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

from .. import partition_table as pt
from ..errors import AtFactoryError
from . import PartitionFormat


def describe_entry(e: pt.Entry) -> str:
    return f"type 0x{e.type:02x} subtype {e.subtype} at 0x{e.offset:x} size 0x{e.size:x}"


class AtCustomizeFormat(PartitionFormat):
    kind = "at_customize"
    label = "TABLE"
    builder = "AtfAtCustomize"

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return pt.encode_partition_table([pt.Entry(*row) for row in spec["entries"]], md5=True)

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        try:
            got = {e.name: e for e in pt.decode_partition_table(have).entries}
            wanted = {e.name: e for e in pt.decode_partition_table(want).entries}
        except AtFactoryError as err:
            return f"not a partition table ({err})"
        notes = [f"{n} missing" for n in wanted if n not in got] + [f"{n} not in the board" for n in got if n not in wanted]
        notes += [f"{n}: image {describe_entry(got[n])}, board {describe_entry(wanted[n])}"
                  for n in wanted if n in got and got[n] != wanted[n]]
        return "; ".join(notes) or None
