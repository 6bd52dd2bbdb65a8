"""ACME's vendor plugin: a real example of every atfactory hook.

Loaded only where asked for: ``scons plugins=examples/acme/plugins board=ACME-W32``.

- ``[vendor]`` is a board table of ACME's (name, product, hw_revision, country, production);
- the ACME-W32 board (boards/ACME-W32.toml beside this module) extends the stock WROOM-32 with other pins;
- a board with ``vendor.country = "US"`` gets the US channel plan (1 to 11) in factory_param;
- a ``device_info`` AT partition holds the vendor table as JSON, readable with AT+SYSFLASH;
  its format (``DeviceInfoFormat``) lets ``atfactory inspect``, ``verify`` and the flash map read it;
- a production board's factory image leaves out partitions still holding the development
  certificates of the stock boards (they are provisioned per device instead);
- after a build, ``<build_dir>/<ID>-release.zip`` archives the release folder, reproducibly.
"""
from __future__ import annotations

import io
import json
import os
import zipfile

from atfactory import hookimpl
from atfactory.builtin_plugin import STOCK_BOARDS
from atfactory.errors import ContentError, FormatError
from atfactory.formats import Content
from atfactory.formats.raw import RawFormat
from atfactory.fsutil import read_input, write_atomic

__version__ = "1.0.0"

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR_KEYS = {"name": str, "product": str, "hw_revision": str, "country": str, "production": bool}
DEV_CERTS = os.path.join(STOCK_BOARDS, "data", "certs")
DEVICE_INFO_MAGIC = b"ACDI"          # ACME device info, format 1
DEVICE_INFO_SUBTYPE = 0x60
CHANNEL_PLANS = {"US": (1, 11), "CA": (1, 11), "JP": (1, 14)}


def check_vendor(table):
    problems = []
    for key, value in table.items():
        if key not in VENDOR_KEYS:
            problems.append(f"unknown key {key!r}; accepted: {', '.join(VENDOR_KEYS)}")
        elif not isinstance(value, VENDOR_KEYS[key]):
            problems.append(f"{key} = {value!r}: expected {'true or false' if VENDOR_KEYS[key] is bool else 'a string'}")
    if "name" not in table:
        problems.append("name: missing; the vendor table needs the vendor's name")
    return problems


@hookimpl
def atfactory_board_tables():
    return {"vendor": check_vendor}


@hookimpl
def atfactory_register_boards(registry):
    registry.add(os.path.join(HERE, "boards", "ACME-W32.toml"))


@hookimpl
def atfactory_configure_board(board):
    vendor = board.data.get("vendor")
    if not vendor or "country" not in vendor:
        return None
    plan = CHANNEL_PLANS.get(vendor["country"])
    if plan is None:
        raise ValueError(f"vendor.country = {vendor['country']!r}: no channel plan known; "
                         f"accepted: {', '.join(sorted(CHANNEL_PLANS))}")
    start, count = plan
    return {"factory_param": {"country_code": vendor["country"], "start_channel": start, "channel_num": count}}


class DeviceInfoFormat(RawFormat):
    """ACME's device_info partition: "ACDI", the JSON length (u16), the vendor table as JSON.

    The build makes it from [vendor] (``atfactory_register_partitions``); a board may also give
    it as a file (an extracted board does), which must then be a device_info image."""
    kind = "acme_device_info"
    label = "ACDI"
    builder = "AtfAcmeDeviceInfo"
    fallback = False

    def claims(self, name, at_version):
        return name == "device_info"

    def read(self, name, sources, ctx):
        if not sources:
            return None
        if len(sources) != 1:
            raise ContentError(f"{len(sources)} files; device_info is one device_info image")
        data = read_input(sources[0])
        try:
            self.decode(data)
        except FormatError as err:
            raise ContentError(f"not an ACME device_info image ({err})", sources[0]) from None
        return Content(self.kind, len(data), {}, tuple(sources))

    def detect(self, data):
        return data[:4] == DEVICE_INFO_MAGIC

    def decode(self, data, name=""):
        if data[:4] != DEVICE_INFO_MAGIC or len(data) < 6:
            raise FormatError(f"magic {bytes(data[:4]).hex()}, expected {DEVICE_INFO_MAGIC.hex()} (ACDI)", offset=0)
        length = int.from_bytes(data[4:6], "little")
        try:
            table = json.loads(bytes(data[6:6 + length]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError(f"the JSON does not parse ({exc})", offset=6) from None
        if not isinstance(table, dict) or len(data) < 6 + length:
            raise FormatError("expected a JSON object of the declared length", offset=4)
        return {"kind": self.kind, "fields": table}

    def explain(self, have, want):
        try:
            got, wanted = self.decode(have)["fields"], self.decode(want)["fields"]
        except FormatError:
            return None
        diffs = [f"vendor.{k} is {got.get(k)!r}, the board says {wanted.get(k)!r}"
                 for k in sorted(set(got) | set(wanted)) if got.get(k) != wanted.get(k)]
        return "; ".join(diffs) or None

    def describe(self, doc):
        return [f"{k} = {v!r}" for k, v in sorted(doc["fields"].items())]

    def map_detail(self, doc):
        return "ACME device info"

    def board_map_detail(self, content):
        return "ACME device info"


@hookimpl
def atfactory_register_formats(registry):
    registry.add(DeviceInfoFormat())


def build_device_info(board, inputs):
    text = json.dumps({"module": board.module_name, **board.data["vendor"]}, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")
    return DEVICE_INFO_MAGIC + len(text).to_bytes(2, "little") + text


@hookimpl
def atfactory_register_partitions(board, registry):
    vendor = board.data.get("vendor")
    if vendor:
        registry.add("device_info", subtype=DEVICE_INFO_SUBTYPE, size="4K", build=build_device_info,
                     values={"module": board.module_name, **vendor})


@hookimpl
def atfactory_pre_merge(board, images):
    vendor = board.data.get("vendor") or {}
    if not vendor.get("production"):
        return
    dev = {f"customized_partitions/{p.name}.bin" for p in board.partitions
           if p.sources and all(os.path.dirname(s) == DEV_CERTS for s in p.sources)}
    images[:] = [(offset, path) for offset, path in images
                 if not any(path.replace(os.sep, "/").endswith(d) for d in dev)]


@hookimpl
def atfactory_post_build(board, outputs):
    if not board.data.get("vendor"):
        return
    release = outputs["."]
    archive = os.path.join(os.path.dirname(release), f"{board.id}-release.zip")
    names = sorted(n for n in outputs if n != ".")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            info = zipfile.ZipInfo(f"{board.id}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            secret = (os.stat(outputs[name]).st_mode & 0o077) == 0
            info.external_attr = (0o600 if secret else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(outputs[name], "rb") as f:
                z.writestr(info, f.read())
    # The archive holds the key partitions: owner-readable only.
    write_atomic(archive, buf.getvalue(), secret=True)
