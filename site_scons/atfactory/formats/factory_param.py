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
COUNTRY = re.compile(r"^[A-Za-z0-9]{1,3}\Z")
# Every field a board must give: all but the defaulted ones and those [module] sets.
REQUIRED = [f.name for f in fp.FIELDS if f.name not in fp.DEFAULTS and f.name not in fp.MODULE_FIELDS]


def release_layout(at_version: Optional[str]) -> int:
    """The factory_param layout a v2 release writes (an unknown release: today's)."""
    from ..at_releases import AT_RELEASES
    release = AT_RELEASES.get(at_version) if at_version else None
    return release.factory_param_layout if release is not None else fp.LAYOUT


def layout_releases(layout: int) -> frozenset:
    """The v2 releases that write this factory_param layout."""
    from ..at_releases import V2_RELEASES
    return frozenset(v for v in V2_RELEASES if release_layout(v) == layout)


def _layout_words(layout: int) -> str:
    """'layout 1 (ESP-AT 2.0)', 'layout 3 (ESP-AT 2.2, 2.3, 2.4.0, 2.4 and 3.0)'."""
    from ..at_releases import V2_RELEASES
    releases = [v for v in V2_RELEASES if v in layout_releases(layout)]
    return f"layout {layout} (ESP-AT {', '.join(releases[:-1]) + ' and ' if len(releases) > 1 else ''}{releases[-1]})"


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
        layout = release_layout(ctx.at_version)
        fields = fp.LAYOUTS[layout]
        if any(f.name not in values for f in fields):
            return None  # a missing field: the board checks report it by key
        spec: Dict[str, object] = {"values": {f.name: values[f.name] for f in fields}}
        if layout != fp.LAYOUT:
            spec["layout"] = layout
        return Content(self.kind, fp.SIZE, spec, ())

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return fp.encode_factory_param(spec["values"], spec.get("layout", fp.LAYOUT))

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
        layout = fp.layout_of(data)
        return {"kind": self.kind, "layout": layout, "fields": fp.decode_factory_param(data, layout)}

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        try:
            have_layout, want_layout = fp.layout_of(have), fp.layout_of(want)
            got, wanted = fp.decode_factory_param(have, have_layout), fp.decode_factory_param(want, want_layout)
        except AtFactoryError:
            return None
        if have_layout != want_layout:
            return (f"the image's factory_param is {_layout_words(have_layout)}, the board's "
                    f"{_layout_words(want_layout)}: build for the image's at_version")
        fields = [f"factory_param.{k} is {got[k]!r}, the board says {wanted[k]!r}" for k in wanted
                  if got.get(k) != wanted[k]]
        return "; ".join(fields) or None

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        # Only the layout tells releases apart: 2.0 writes layout 1, 2.1 layout 2, 2.2 to 3.0 layout 3.
        layout = doc.get("layout")
        if layout is None:
            from ..at_releases import V2_RELEASES
            return frozenset(V2_RELEASES)
        return layout_releases(layout)

    def firmware_releases(self, entries, contents):
        if any(name == PARTITION and ptype == 0x40 for name, ptype, _ in entries):
            try:
                doc = self.decode(contents[PARTITION])
            except (KeyError, AtFactoryError):
                doc = {}   # erased, or not a factory_param: any v2 release
            return self.implied_at_versions(PARTITION, doc)
        return None

    def module_settings(self, doc: dict) -> Optional[ModuleSettings]:
        # ESP-AT 2.0 and 2.1 store no module name or platform; the board's file stem names it.
        fields = doc["fields"]
        return ModuleSettings(fields.get("module_name", ""), fields.get("platform"),
                              {k: v for k, v in fields.items() if k not in fp.MODULE_FIELDS})

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        # The values go into [factory_param] (module_settings); only unknown bytes need a word.
        layout = fp.layout_of(raw)
        if fp.encode_factory_param(fp.decode_factory_param(raw, layout), layout) != raw[:fp.SIZE]:
            erased = "reserved2 or the tail" if layout == fp.LAYOUT else "from byte 22 on"
            notes.append(f"factory_param: bytes outside the known fields ({erased}) are not erased; "
                         "a rebuild writes them erased")
        return []

    def describe(self, doc: dict) -> List[str]:
        lines = [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in doc["fields"].items()]
        layout = doc.get("layout", fp.LAYOUT)
        if layout != fp.LAYOUT:
            lines.insert(0, f"{_layout_words(layout)}: module_id at byte 3, no platform or module name")
        return lines


# [factory_param] of ESP-AT v3.1+ (the factory_param namespace of mfg_nvs): no magic, no
# reserved bytes, no tx/rx control pins; version is an i8 (default 4), sys_store a u8 from 4.1.
NVS_ONLY = ("sys_store",)
V2_ONLY = ("magic_flag", "reserved1", "tx_control_pin", "rx_control_pin")
NVS_REQUIRED = [n for n in REQUIRED if n not in V2_ONLY]
OLD_ONLY = ("module_id",)   # ESP-AT 2.0 and 2.1 only


def _lacking(name: str, at_version: str, layout: int, nvs: bool) -> str:
    """Why a [factory_param] key is refused at this release, and what to do instead."""
    if layout != fp.LAYOUT:
        byte3 = " (byte 3 is module_id there)" if name == "reserved1" else ""
        names = [f.name for f in fp.LAYOUTS[layout]]
        return f"ESP-AT {at_version} has no factory_param.{name}{byte3}; accepted: {', '.join(names)}"
    since = ""
    if name in NVS_ONLY and nvs:
        since = " (it exists from ESP-AT 4.1)"
    elif name in OLD_ONLY:
        since = " (it existed up to ESP-AT 2.1)" if nvs else \
            " (it existed up to ESP-AT 2.1; byte 3 is reserved1 from 2.2)"
    return f"ESP-AT {at_version} has no factory_param.{name}{since}; remove it"


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

    layout = release.factory_param_layout if release is not None and not nvs else fp.LAYOUT
    if nvs:
        values: Dict[str, object] = {"version": 4}
        if release.sys_store:
            values["sys_store"] = 1
        required, lacking = NVS_REQUIRED, V2_ONLY + OLD_ONLY + (() if release.sys_store else NVS_ONLY)
        what = "except version and sys_store" if release.sys_store else "except version"
    elif layout != fp.LAYOUT:   # ESP-AT 2.0 and 2.1: module_id at byte 3, no strings
        names = [f.name for f in fp.LAYOUTS[layout]]
        values = fp.defaults(layout)
        required = [n for n in names if n not in values]
        lacking = tuple(n for n in fp.ALL_FIELD_NAMES + NVS_ONLY if n not in names and n not in fp.MODULE_FIELDS)
        what = "except magic_flag and version"
    else:
        values = dict(fp.DEFAULTS)
        required, lacking = REQUIRED, NVS_ONLY + OLD_ONLY
        what = "except magic_flag, version and reserved1"
    for name in required:
        if name not in table:
            c.problems.append(Problem(c.leaf, f"factory_param.{name}", f"missing; every factory_param field "
                                      f"{what} must be given"))
    for name in lacking:
        if name in table:
            bad(name, _lacking(name, at_version or "2.4", layout, nvs))
    values.update({k: v for k, v in table.items() if k not in lacking})

    def in_range(name, lo, hi, extra=""):
        if name in table and name not in lacking and not lo <= table[name] <= hi:
            bad(name, f"out of range; accepted: {extra}{lo} to {hi}")

    if nvs:
        in_range("version", -128, 127)
        in_range("sys_store", 0, 1)
    else:
        in_range("magic_flag", 0, 0xFFFF)
        in_range("reserved1", 0, 255)
        in_range("module_id", 0, 255)
        if layout == fp.LAYOUT:
            in_range("version", 0, 255)
        elif "version" in table and table["version"] != layout:
            # the releases write their layout's number here; read back, it tells layouts 1 and 2 apart
            bad("version", f"ESP-AT {at_version} writes factory_param layout {layout}; accepted: {layout}")
    if layout != fp.LAYOUT:
        # not the chip's 0.25 dBm range: these releases' own module lists go outside it
        # (v2.0.0.0_esp8266 gives 1 for every module)
        in_range("tx_max_power", -128, 127, f"(a signed byte in ESP-AT {at_version}) ")
    if chip is not None:
        lo, hi = chip.tx_power_range
        if layout == fp.LAYOUT:
            in_range("tx_max_power", lo, hi, f"(0.25 dBm units on {chip.title}) ")
        port = table.get("uart_port") if "uart_port" not in lacking else None
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
