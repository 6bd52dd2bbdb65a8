"""The factory_param partition of AT v2 (4096 bytes, magic FC FC) in the build and read-back."""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence

from ..at_releases import is_v2
from .. import factory_param as fp
from .. import pins
from ..chips import describe_ranges
from ..errors import AtFactoryError, ContentError, FormatError, Problem
from . import Content, ModuleSettings, PartitionFormat, ReadContext

PARTITION = "factory_param"
COUNTRY = re.compile(r"^[A-Za-z0-9]{1,3}$")
# Every field a board must give: all but the defaulted ones and those [module] sets.
REQUIRED = [f.name for f in fp.FIELDS if f.name not in fp.DEFAULTS and f.name not in ("platform", "module_name")]


class FactoryParamFormat(PartitionFormat):
    kind = "factory_param"
    label = "PARAM"
    builder = "AtfFactoryParam"
    reads_factory_param = True

    def claims(self, name: str, at_version: str) -> bool:
        return name == PARTITION and is_v2(at_version)

    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        if sources:
            raise ContentError("factory_param is built from the [factory_param] table; remove its source")
        values = ctx.factory_param or {}
        if any(f.name not in values for f in fp.FIELDS):
            return None  # a missing field: the board checks report it by key
        return Content(self.kind, fp.SIZE, {"values": {f.name: values[f.name] for f in fp.FIELDS}}, ())

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return fp.encode_factory_param(spec["values"])

    def extra_targets(self, partition_name: str, module_name: str):
        # ESP-AT releases carry the same bytes a second time under the module's name.
        return (f"factory_param_{module_name}",)

    def detect(self, data: bytes) -> bool:
        return data[:2] == fp.MAGIC.to_bytes(2, "little")

    def detect_name(self, base_name: str) -> bool:
        return base_name.startswith("factory_param")

    def decode(self, data: bytes, name: str = "") -> dict:
        if len(data) < fp.SIZE:
            raise FormatError(f"factory_param: {len(data)} bytes, expected {fp.SIZE}", offset=len(data))
        return {"kind": self.kind, "fields": fp.decode_factory_param(data)}

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        try:
            got, wanted = fp.decode_factory_param(have), fp.decode_factory_param(want)
        except AtFactoryError:
            return None
        fields = [f"factory_param.{k} is {got[k]!r}, the board says {wanted[k]!r}" for k in wanted
                  if got.get(k) != wanted[k]]
        return "; ".join(fields) or None

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        from ..at_releases import AT_RELEASES
        return frozenset(v for v in AT_RELEASES if is_v2(v))

    def firmware_releases(self, entries, contents):
        if any(name == PARTITION and ptype == 0x40 for name, ptype, _ in entries):
            return self.implied_at_versions(PARTITION, {})
        return None

    def module_settings(self, doc: dict) -> Optional[ModuleSettings]:
        fields = doc["fields"]
        return ModuleSettings(fields["module_name"], fields["platform"],
                              {k: v for k, v in fields.items() if k not in ("platform", "module_name")})

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        # The values go into [factory_param] (module_settings); only unknown bytes need a word.
        if fp.encode_factory_param(fp.decode_factory_param(raw)) != raw[:fp.SIZE]:
            notes.append("factory_param: bytes outside the known fields (reserved2 or the tail) are not erased; "
                         "a rebuild writes them erased")
        return []

    def describe(self, doc: dict) -> List[str]:
        return [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in doc["fields"].items()]


# [factory_param] of ESP-AT v3.1+ (the factory_param namespace of mfg_nvs): no magic, no
# reserved bytes, no tx/rx control pins; version is an i8 (default 4), sys_store a u8 from 4.1.
NVS_ONLY = ("sys_store",)
V2_ONLY = ("magic_flag", "reserved1", "tx_control_pin", "rx_control_pin")
NVS_REQUIRED = [n for n in REQUIRED if n not in V2_ONLY]


def check_table(c, chip, at_version: Optional[str] = None, module_name: Optional[str] = None) -> Dict[str, object]:
    """Check [factory_param] of a merged board (``c``: a checks.Checker) for its AT release and
    module (its name tells which GPIOs the module wires to memory: pins.py); its values with the
    release's defaults."""
    from ..at_releases import AT_RELEASES

    table = c.merged.data.get("factory_param") or {}
    release = AT_RELEASES.get(at_version) if at_version else None
    nvs = release is not None and not is_v2(at_version)

    def bad(name, message):
        c.fail(("factory_param", name), message, table[name])

    if nvs:
        values: Dict[str, object] = {"version": 4}
        if release.sys_store:
            values["sys_store"] = 1
        required, lacking = NVS_REQUIRED, V2_ONLY + (() if release.sys_store else NVS_ONLY)
        what = "except version and sys_store" if release.sys_store else "except version"
    else:
        values = dict(fp.DEFAULTS)
        required, lacking = REQUIRED, NVS_ONLY
        what = "except magic_flag, version and reserved1"
    for name in required:
        if name not in table:
            c.problems.append(Problem(c.leaf, f"factory_param.{name}", f"missing; every factory_param field "
                                      f"{what} must be given"))
    for name in lacking:
        if name in table:
            since = " (it exists from ESP-AT 4.1)" if name in NVS_ONLY and nvs else ""
            bad(name, f"ESP-AT {at_version or '2.4'} has no factory_param.{name}{since}; remove it")
    values.update({k: v for k, v in table.items() if k not in lacking})

    def in_range(name, lo, hi, extra=""):
        if name in table and name not in lacking and not lo <= table[name] <= hi:
            bad(name, f"out of range; accepted: {extra}{lo} to {hi}")

    if nvs:
        in_range("version", -128, 127)
        in_range("sys_store", 0, 1)
    else:
        in_range("magic_flag", 0, 0xFFFF)
        in_range("version", 0, 255)
        in_range("reserved1", 0, 255)
    if chip is not None:
        lo, hi = chip.tx_power_range
        in_range("tx_max_power", lo, hi, f"(0.25 dBm units on {chip.title}) ")
        port = table.get("uart_port")
        if port is not None and port != -1 and not 0 <= port < chip.uart_count:
            bad("uart_port", f"{chip.title} has UART 0 to {chip.uart_count - 1}; accepted: -1 (none) or 0 to {chip.uart_count - 1}")
        elif isinstance(port, int) and pins.at_uart_problem(chip, port):
            bad("uart_port", pins.at_uart_problem(chip, port))
    in_range("start_channel", 1, 14)
    in_range("channel_num", 1, 14)
    start, count = table.get("start_channel"), table.get("channel_num")
    if isinstance(start, int) and isinstance(count, int) and 1 <= start <= 14 and 1 <= count <= 14 \
            and start + count - 1 > 14:
        bad("channel_num", f"channels {start} to {start + count - 1} run past channel 14; "
                           f"accepted with start_channel = {start}: 1 to {15 - start}")
    cc = table.get("country_code")
    if isinstance(cc, str) and not COUNTRY.match(cc):
        bad("country_code", "accepted: 1 to 3 ASCII letters or digits, such as \"CN\", \"US\" or \"01\"")
    baud = table.get("uart_baudrate")
    if isinstance(baud, int) and baud != -1 and not 1 <= baud <= 5_000_000:
        bad("uart_baudrate", "accepted: -1 (none) or 1 to 5000000")
    if chip is not None:
        used: Dict[int, str] = {}
        fine: Dict[str, int] = {}   # the pins that pass, -1 included: the set rules see them
        for name in fp.PIN_FIELDS:
            pin = table.get(name)
            if name in lacking or not isinstance(pin, int) or pin == -1:
                if pin == -1 and name not in lacking:
                    fine[name] = pin
                continue
            if pin not in chip.gpios:
                bad(name, f"{chip.title} has no GPIO{pin}; accepted: -1 (unused) or {chip.describe_gpios()}")
            elif pins.refusal(chip, pin, module_name):
                bad(name, pins.refusal(chip, pin, module_name))
            elif name in fp.OUTPUT_PIN_FIELDS and pin in chip.input_only_gpios:
                bad(name, f"GPIO{pin} is input-only on {chip.title} and cannot drive this output; "
                          f"input-only: {describe_ranges(sorted(chip.input_only_gpios))}")
            elif pin in used:
                bad(name, f"GPIO{pin} is already factory_param.{used[pin]}; each GPIO may serve one function")
            else:
                used[pin] = name
                fine[name] = pin
        pins.check_set(c, chip, fine, bad)
    return values
