"""The mfg_nvs partition of ESP-AT v3.1 and later: one NVS image with everything a module needs.

It holds, in Espressif's namespace order whatever the order of the board file: the certificate
sets (server, client, wpa2, mqtt, https, wss; cert, key, ca each) from ``[mfg_nvs]``, then
``factory_param`` from the board's ``[factory_param]`` and ``[module] name``, then ``ble_data``
(one string per GATT row).  A set of one file is the key ``<set>``; several are ``<set>.0``,
``<set>.1``, ... in file-name order, as ESP-AT's build names them.  The bytes are those of the
release's NVS generator family (``at_releases``); the codec is ``atfactory.nvs``.
"""
from __future__ import annotations

import csv
import io
import os
from typing import Dict, List, Mapping, Optional, Sequence

from .. import nvs_limits, vendor_nvs
from ..at_releases import AT_RELEASES, MFG_NVS, MFG_NVS_ROLES, MFG_NVS_SETS, MFG_NVS_USES
from ..errors import ContentError, ExtractError, FormatError
from ..fsutil import read_input, write_atomic
from ..stamps import stamp_of
from . import CertificateFile, Content, ImageCertificate, ModuleSettings, PartitionFormat, ReadContext
from .pki import describe_certificate, read_certificate_files

PARTITION = "mfg_nvs"
USES, ROLES, SET_NAMES = MFG_NVS_USES, MFG_NVS_ROLES, MFG_NVS_SETS   # Espressif's namespace order
LATER_USES = ("https", "wss")                                          # from ESP-AT v4.1
# [factory_param] key -> (NVS key, NVS type), in the order ESP-AT's factory_param_type.csv lists them.
FACTORY_KEYS = (
    ("version", "version", "i8"), ("module_name", "module_name", "string"),
    ("tx_max_power", "max_tx_power", "i8"), ("country_code", "country_code", "string"),
    ("start_channel", "start_channel", "u8"), ("channel_num", "channel_num", "u8"),
    ("uart_port", "uart_port", "i8"), ("uart_baudrate", "uart_baudrate", "i32"),
    ("uart_tx_pin", "uart_tx_pin", "i32"), ("uart_rx_pin", "uart_rx_pin", "i32"),
    ("uart_cts_pin", "uart_cts_pin", "i32"), ("uart_rts_pin", "uart_rts_pin", "i32"),
    ("sys_store", "sys_store", "u8"),
)
FAMILIES = {nvs_limits.FAMILY_A: "every page but the last written FULL, as ESP-IDF's in-tree generator of ESP-AT v3.1-v4.0 "
                          "and tools/at.py write",
            nvs_limits.FAMILY_B: "the last page in use left ACTIVE, as esp-idf-nvs-partition-gen 0.1.7+ of ESP-AT v4.1+ writes"}
BOARD_KEY_OF = {nvs_key: board_key for board_key, nvs_key, _ in FACTORY_KEYS}
GATT_V2_HEADER = ["index", "uuid_len", "uuid", "perm", "val_max_len", "val_cur_len", "value"]


def is_mfg_nvs_release(at_version: Optional[str]) -> bool:
    release = AT_RELEASES.get(at_version) if at_version else None
    return release is not None and release.generation == MFG_NVS


# Per-device builds make thousands of images that share the board's certificate files and GATT
# table: those reads are kept, keyed by the file's identity and times, so a file that changes is
# read again.  Small files only (certificates, keys and GATT tables are a few KiB).
_SHARED: Dict[tuple, object] = {}
_SHARED_LIMIT = 256


def _shared(kind: str, path: str, read):
    stamp = stamp_of(path)
    if stamp is None:
        return read(path)   # read() says why the file cannot be read
    key = (kind, path, stamp)
    if key not in _SHARED:
        value = read(path)
        if len(_SHARED) >= _SHARED_LIMIT:
            _SHARED.clear()
        _SHARED[key] = value
    return _SHARED[key]


def read_gatt_rows(path: str) -> List[str]:
    """The GATT rows of a CSV file (see _read_gatt_rows), read once per version of the file."""
    return list(_shared("gatt", path, _read_gatt_rows))


def _read_gatt_rows(path: str) -> List[str]:
    """ESP-AT v3's gatts_data.csv (a '#' line for a header) or the v2 GATT CSV: each row's cells
    joined by commas, as ESP-AT's build writes them into ble_data.cfg<i>."""
    data = read_input(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ContentError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); expected a GATT CSV",
                           path) from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cells = next(csv.reader(io.StringIO(line)))
        if [c.strip() for c in cells] == GATT_V2_HEADER and not rows:
            continue
        if len(cells) != len(GATT_V2_HEADER):
            raise ContentError(f"line {number}: {len(cells)} cells; a GATT row has {len(GATT_V2_HEADER)} "
                               f"({','.join(GATT_V2_HEADER)})", path)
        row = ",".join(cells)
        if not row.isascii() or not row.isprintable() or '"' in row:
            raise ContentError(f"line {number}: only printable ASCII without '\"' fits a ble_data row", path)
        rows.append(row)
    if not rows:
        raise ContentError("no GATT rows; expected one line per attribute", path)
    return rows


def _read_set(use: str, role: str, set_name: str, files: Sequence[str], ctx: ReadContext):
    """(data per file, CertificateFile per file) of one set, in file-name order; empty files refused."""
    key = f"mfg_nvs.{set_name}"
    try:
        content, certs = read_certificate_files(use, role, files, ctx, "", key, max_content=None)
    except ContentError as err:
        raise ContentError(err.message, err.path, key=key) from None
    for cert, data in zip(certs, content):
        if not data:
            raise ContentError("the file is empty; an empty certificate or key is no item", cert.path, key=key)
    return content, certs


def _certificate_keys(set_name: str, count: int) -> List[str]:
    return [set_name] if count == 1 else [f"{set_name}.{n}" for n in range(count)]


class MfgNvsFormat(PartitionFormat):
    kind = "mfg_nvs"
    label = "NVS"
    builder = "AtfMfgNvs"
    reads_factory_param = True
    reads_vendor_namespaces = True

    def claims(self, name: str, at_version: Optional[str]) -> bool:
        return name == PARTITION and (at_version is None or is_mfg_nvs_release(at_version))

    # -- the board side ------------------------------------------------------------------
    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        if sources:
            raise ContentError("mfg_nvs is built from [factory_param] and [mfg_nvs]; remove its source")
        return self.read_certificates(name, {}, ctx)

    def read_certificates(self, name, sets: Mapping[str, Sequence[str]], ctx: ReadContext) -> Optional[Content]:
        """The partition with the board's [mfg_nvs] and these certificate sets in place of its own."""
        from .. import nvs   # the codec: not imported by a board check that encodes nothing
        size = ctx.partition_size
        if size is not None and (size < nvs_limits.MIN_SIZE or size % nvs_limits.PAGE_SIZE):
            raise ContentError(f"0x{size:x} is too small for an NVS partition; accepted: whole 4 KiB pages, at least "
                               f"0x{nvs_limits.MIN_SIZE:x} (three pages; the NVS library keeps the last one erased)",
                               key="partition.size")
        table = dict((ctx.tables or {}).get("mfg_nvs") or {})
        ble_data = table.get("ble_data")
        family = table.get("generator_family", AT_RELEASES[ctx.at_version].nvs_family)
        if family not in FAMILIES:
            raise ContentError(f"unknown generator family {family!r}; accepted: {', '.join(FAMILIES)} "
                               f"({'; '.join(f'{k}: {v}' for k, v in FAMILIES.items())})",
                               key="mfg_nvs.generator_family")
        given = set(sets)   # per device: the board's own sets were checked when it was loaded
        sets = dict({s: table[s] for s in SET_NAMES if s in table}, **sets)
        release = AT_RELEASES[ctx.at_version]
        values = ctx.factory_param or {}
        if any(k not in values for k, _, t in FACTORY_KEYS if k != "sys_store" or release.sys_store):
            return None   # a missing value: the board checks report it by key
        certificates: List[CertificateFile] = []
        cert_spec = []
        datas: List[bytes] = []
        for set_name in SET_NAMES:
            files = sets.get(set_name)
            if not files:
                continue
            use, role = set_name.rsplit("_", 1)
            if use in LATER_USES and not release.https_wss:
                raise ContentError(f"ESP-AT {ctx.at_version} has no {use} certificates (they exist from 4.1); "
                                   "remove them or build for at_version 4.1 or later", key=f"mfg_nvs.{set_name}")
            files = [files] if isinstance(files, str) else files
            board_set = ctx.memo is not None and set_name not in given   # per device: a set of the board's own
            memo_key = ("set", set_name, tuple(files))
            if board_set and ctx.memo is not None and memo_key in ctx.memo:
                content, certs = ctx.memo[memo_key]
            else:
                set_ctx = ctx._replace(parse=False, read=None) if board_set else ctx
                content, certs = _read_set(use, role, set_name, files, set_ctx)
                if board_set and ctx.memo is not None:
                    ctx.memo[memo_key] = (content, certs)
            certificates += certs
            datas += content
            cert_spec.append([set_name, _certificate_keys(set_name, len(certs))])
        factory = [[nvs_key, nvs_type, values[board_key]] for board_key, nvs_key, nvs_type in FACTORY_KEYS
                   if board_key != "sys_store" or release.sys_store]
        sources = [c.path for c in certificates]
        rows: List[str] = []
        if ble_data:
            try:
                if ctx.memo is None:
                    rows = read_gatt_rows(ble_data)
                else:   # the board's own table: the same for every device
                    rows = ctx.memo.get(("gatt", ble_data)) or ctx.memo.setdefault(("gatt", ble_data),
                                                                                    read_gatt_rows(ble_data))
            except ContentError as err:
                raise ContentError(err.message, err.path, key="mfg_nvs.ble_data") from None
            sources.append(ble_data)
        vendor, blobs = [], []
        for item in vendor_nvs.declared(table.get(vendor_nvs.TABLE)):
            board_key = f"mfg_nvs.{vendor_nvs.TABLE}.{item.namespace}.{item.key}"
            if item.file is not None:
                try:
                    data = _shared("file", item.file, read_input)
                except ContentError as err:
                    raise ContentError(err.message, err.path, key=board_key) from None
                if not data:
                    raise ContentError("the file is empty; a blob holds at least one byte", item.file, key=board_key)
                blobs.append(data)
                sources.append(item.file)
                value = None
            else:
                value = item.value.hex() if isinstance(item.value, bytes) else item.value
            if not vendor or vendor[-1][0] != item.namespace:
                vendor.append([item.namespace, []])
            vendor[-1][1].append([item.key, item.type, value])
        spec = {"family": family, "size": ctx.partition_size, "certificates": cert_spec,
                "factory_param": factory, "ble_data": bool(ble_data), "vendor": vendor}
        image = None
        try:
            if ctx.render and ctx.partition_size is not None:
                needed, image = nvs.encode_if_fits(_namespaces(spec, datas, rows, blobs), ctx.partition_size, family)
            else:
                needed = nvs.required_size(_namespaces(spec, datas, rows, blobs))
        except FormatError as err:
            raise ContentError(str(err)) from None
        return Content(self.kind, needed, spec, tuple(sources), secret=any(c.role == "key" for c in certificates),
                       certificates=tuple(certificates), data=image)

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        from .. import nvs
        count = sum(len(keys) for _, keys in spec["certificates"])
        datas = [_shared("file", p, read_input) for p in sources[:count]]
        rows = read_gatt_rows(sources[count]) if spec["ble_data"] else []
        blobs = [_shared("file", p, read_input) for p in sources[count + bool(spec["ble_data"]):]]
        return nvs.encode_nvs(_namespaces(spec, datas, rows, blobs), spec["size"], spec["family"])

    def board_problems(self, names: Sequence[str], at_version: Optional[str], data: Mapping[str, object]):
        """v3.1+ boards need an mfg_nvs partition; v2 boards have none, and no [mfg_nvs] table."""
        if is_mfg_nvs_release(at_version):
            if PARTITION not in names:
                yield ("at_customize.partitions", f"no {PARTITION} partition; ESP-AT {at_version} reads its module "
                       f"settings and certificates from one (type data, subtype nvs)", None)
            name = (data.get("module") or {}).get("name")
            if isinstance(name, str) and name != name.upper():
                yield ("module.name", "has lower-case letters; ESP-AT's build upper-cases module names, so the "
                       f"firmware would look for {name.upper()!r}: write it in capitals", name)
        elif at_version in AT_RELEASES:
            if PARTITION in names:
                yield (f"at_customize.partitions[{PARTITION}]", f"ESP-AT {at_version} has no {PARTITION} partition "
                       "(it came with 3.1); use the v2 partitions, or at_version \"3.1\" or later", PARTITION)
            if "mfg_nvs" in data:
                yield ("mfg_nvs", f"ESP-AT {at_version} has no mfg_nvs partition (it came with 3.1); put "
                       "certificates in their partitions' source, or build for at_version \"3.1\" or later", None)

    def certificate_slots(self, name: str, at_version: str):
        release = AT_RELEASES.get(at_version)
        return tuple(s for s in SET_NAMES if release is None or release.https_wss or s.split("_")[0] not in LATER_USES)

    def board_map_detail(self, content: Content) -> str:
        n = len(content.certificates)
        return f"NVS, {n} certificate{'s' if n != 1 else ''} and keys" if n else "NVS"

    # -- the bytes side ------------------------------------------------------------------
    def detect(self, data: bytes) -> bool:
        from .. import nvs
        return nvs.looks_like_nvs(data)

    def detect_name(self, base_name: str) -> bool:
        return base_name == f"{PARTITION}.bin"

    def decode(self, data: bytes, name: str = "") -> dict:
        from .. import nvs
        image = nvs.decode_nvs(data)
        namespaces: Dict[str, Dict[str, dict]] = {}
        for item in image.items:
            entry: Dict[str, object] = {"type": item.type}
            if item.type == "blob":
                entry["length"] = len(item.value)
                if item.namespace.split("_")[-1] in ROLES:
                    entry.update(describe_certificate(item.value))
            else:
                entry["value"] = item.value
            namespaces.setdefault(item.namespace, {})[item.key] = entry
        return {"kind": self.kind, "family": image.family, "pages": len(image.pages), "namespaces": namespaces}

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        from .. import nvs
        try:
            got = {(i.namespace, i.key): (i.type, i.value) for i in nvs.decode_nvs(have).items}
            wanted = {(i.namespace, i.key): (i.type, i.value) for i in nvs.decode_nvs(want).items}
        except FormatError as err:
            return f"not an NVS image ({err})"
        notes = [f"{ns}.{key} missing" for ns, key in wanted if (ns, key) not in got]
        notes += [f"{ns}.{key} not in the board" for ns, key in got if (ns, key) not in wanted]
        for (ns, key), (wtype, wvalue) in wanted.items():
            if (ns, key) in got and got[(ns, key)] != (wtype, wvalue):
                gtype, gvalue = got[(ns, key)]
                if wtype == "blob" or gtype == "blob":
                    notes.append(f"{ns}.{key} differs ({len(gvalue) if isinstance(gvalue, bytes) else gvalue!r} "
                                 f"in the image, {len(wvalue) if isinstance(wvalue, bytes) else wvalue!r} from the board"
                                 + (" bytes)" if isinstance(wvalue, bytes) else ")"))
                else:
                    notes.append(f"{ns}.{key} is {gvalue!r} ({gtype}), the board says {wvalue!r} ({wtype})")
        return "; ".join(notes) or "the same keys and values, laid out differently (another generator family?)"

    def image_certificates(self, name: str, doc: dict, raw: bytes) -> List[ImageCertificate]:
        """The blobs of the certificate namespaces: ``<set>`` is item 0, ``<set>.<n>`` item n."""
        from .. import nvs
        out = []
        for item in nvs.decode_nvs(raw).items:
            if item.namespace not in SET_NAMES or item.type != "blob":
                continue
            use, role = item.namespace.rsplit("_", 1)
            suffix = item.key[len(item.namespace) + 1:] if item.key.startswith(item.namespace + ".") else None
            if item.key == item.namespace:
                out.append(ImageCertificate(use, role, 0, item.value))
            elif suffix is not None and suffix.isdigit():
                out.append(ImageCertificate(use, role, int(suffix), item.value))
        return out

    def module_settings(self, doc: dict) -> Optional[ModuleSettings]:
        fp = doc["namespaces"].get("factory_param")
        if not fp or "module_name" not in fp:
            return None
        values = {BOARD_KEY_OF.get(k, k): v.get("value") for k, v in fp.items() if k != "module_name"}
        return ModuleSettings(fp["module_name"]["value"], None, values)

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        """The releases whose build writes this image: the generator family, and the keys it holds."""
        keys = {(ns, key) for ns, items in doc["namespaces"].items() for key in items}
        later = ("factory_param", "sys_store") in keys or any(ns.split("_")[0] in LATER_USES for ns, _ in keys)
        by_keys = frozenset(v for v, r in AT_RELEASES.items() if r.generation == MFG_NVS and r.sys_store == later)
        # at.py modify_bin writes family A over v4.1+ keys: the keys decide then (generator_family says the rest)
        return frozenset(v for v in by_keys if doc["family"] is None or AT_RELEASES[v].nvs_family == doc["family"]) \
            or by_keys

    def firmware_releases(self, entries, contents):
        if not any(name == PARTITION and (ptype, subtype) == (0x01, 0x02) for name, ptype, subtype in entries):
            return None
        data = contents.get(PARTITION)
        if data and data.strip(b"\xff"):
            try:
                return self.implied_at_versions(PARTITION, self.decode(data))
            except FormatError:
                pass
        return frozenset(v for v, r in AT_RELEASES.items() if r.generation == MFG_NVS)

    def extract_tables(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> Dict[str, dict]:
        """[mfg_nvs]: each certificate set's files and the GATT table, written under src_dir/mfg_nvs/."""
        from .. import nvs
        image = nvs.decode_nvs(raw)
        order = [ns.name for ns in image.namespaces]
        known = [s for s in SET_NAMES if s in order] + ["factory_param"] + (["ble_data"] if "ble_data" in order else [])
        own = order[len(known):]
        if order[:len(known)] != known or any(ns in vendor_nvs.RESERVED for ns in own):
            raise ExtractError(f"partition {name}: namespaces {', '.join(order)}; ESP-AT's build writes them in the "
                               f"order {', '.join(known)}, and a board's own namespaces follow, so no board rebuilds "
                               "this image")
        for ns in own:
            if vendor_nvs.name_problem(ns, "namespace"):
                raise ExtractError(f"partition {name}: {vendor_nvs.name_problem(ns, 'the namespace')}, so no board "
                                   "file can name it")
        items: Dict[str, list] = {}
        for item in image.items:
            items.setdefault(item.namespace, []).append(item)
        for ns in own:   # checked before anything is written: each name becomes a file name
            for item in items[ns]:
                if vendor_nvs.name_problem(item.key, "key"):
                    raise ExtractError(f"partition {name}: namespace {ns}: {vendor_nvs.name_problem(item.key, 'the key')}"
                                       ", so no board file can name it")
        fp_keys = [i.key for i in items["factory_param"]]
        expected_fp = [k for _, k, _ in FACTORY_KEYS if k in fp_keys]
        if fp_keys != expected_fp or "module_name" not in fp_keys:
            raise ExtractError(f"partition {name}: factory_param keys {', '.join(fp_keys)}; ESP-AT's build writes "
                               f"{', '.join(expected_fp)} in that order")
        table: Dict[str, object] = {}
        folder = os.path.join(src_dir, PARTITION)
        for set_name in SET_NAMES:
            blobs = items.get(set_name)
            if not blobs:
                continue
            if [i.key for i in blobs] != _certificate_keys(set_name, len(blobs)) or any(i.type != "blob" for i in blobs):
                raise ExtractError(f"partition {name}: namespace {set_name} holds {', '.join(i.key for i in blobs)}; "
                                   f"a board writes {', '.join(_certificate_keys(set_name, len(blobs)))}")
            role = set_name.rsplit("_", 1)[1]
            paths = []
            for n, item in enumerate(blobs):
                ext = "der" if b"-----BEGIN " not in item.value else ("key" if role == "key" else "crt")
                path = os.path.join(folder, set_name, f"{set_name}_{n:03d}.{ext}")
                write_atomic(path, item.value, secret=(role == "key"))
                paths.append(path)
            table[set_name] = paths
        if "ble_data" in items:
            rows = [i.value for i in items["ble_data"]]
            if [i.key for i in items["ble_data"]] != [f"cfg{n}" for n in range(len(rows))] \
                    or any(not isinstance(r, str) or "\n" in r or '"' in r for r in rows):
                raise ExtractError(f"partition {name}: ble_data is not cfg0, cfg1, ... of GATT rows; no board rebuilds it")
            path = os.path.join(folder, "gatts_data.csv")
            write_atomic(path, ("# index,uuid_len,uuid,perm,max_len,cur_len,value\n" + "\n".join(rows) + "\n").encode())
            table["ble_data"] = path
        vendor: Dict[str, dict] = {}
        for ns in own:
            for item in items[ns]:
                if item.type == "blob":
                    path = os.path.join(folder, vendor_nvs.TABLE, ns, f"{item.key}.bin")
                    write_atomic(path, item.value)
                    entry: Dict[str, object] = {"type": "blob", "file": path}
                else:
                    entry = {"type": item.type, "value": item.value}
                vendor.setdefault(ns, {})[item.key] = entry
        if vendor:
            table[vendor_nvs.TABLE] = vendor
        at_versions = self.implied_at_versions(name, doc)
        if image.family and all(AT_RELEASES[v].nvs_family != image.family for v in at_versions):
            table["generator_family"] = image.family
        rebuilt = nvs.encode_nvs(image.namespace_items(), len(raw), image.family or nvs.FAMILY_B)
        if rebuilt != bytes(raw):
            raise ExtractError(f"partition {name}: its pages are not laid out as ESP-AT's generator lays them out, "
                               "so no board rebuilds it byte for byte")
        return {"mfg_nvs": table}

    def describe(self, doc: dict) -> List[str]:
        lines = [f"NVS image, generator family {doc['family'] or '?'}, {doc['pages']} pages"]
        for ns, keys in doc["namespaces"].items():
            lines.append(f"namespace {ns}:")
            for key, entry in keys.items():
                if entry["type"] != "blob":
                    lines.append(f"  {key} ({entry['type']}) = {entry['value']!r}")
                    continue
                head = f"  {key} (blob, {entry['length']} bytes{', ' + entry['format'] if 'format' in entry else ''})"
                if "certificate" in entry:
                    cert = entry["certificate"]
                    head += (f": certificate {cert['subject']}, issuer {cert['issuer']}, valid {cert['not_before']} "
                             f"to {cert['not_after']}")
                elif "key" in entry:
                    head += f": private key {entry['key']['algorithm']} {entry['key'].get('size', '')}".rstrip()
                lines.append(head)
        return lines

    def map_detail(self, doc: dict) -> str:
        return f"NVS, {sum(len(k) for k in doc['namespaces'].values())} keys"


def _namespaces(spec: Mapping[str, object], datas: Sequence[bytes], rows: Sequence[str], blobs: Sequence[bytes]):
    out = []
    it = iter(datas)
    for set_name, keys in spec["certificates"]:
        out.append((set_name, [(key, "blob", next(it)) for key in keys]))
    out.append(("factory_param", [tuple(item) for item in spec["factory_param"]]))
    if rows:
        out.append(("ble_data", [(f"cfg{i}", "string", row) for i, row in enumerate(rows)]))
    files = iter(blobs)
    for ns, keys in spec.get("vendor", ()):
        out.append((ns, [(key, kind, (next(files) if value is None else bytes.fromhex(value)) if kind == "blob"
                          else value) for key, kind, value in keys]))
    return out


