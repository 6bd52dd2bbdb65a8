"""ESP-IDF NVS partition images (the ``mfg_nvs`` partition of ESP-AT v3.1+): encode and decode.

Format (FORMATS-mfg_nvs.md §5): 4096-byte pages of a 32-byte header, a 32-byte bitmap (2 bits an
entry, LSB first: 11 empty, 10 written, 00 erased) and 126 entries; every CRC is
``zlib.crc32(data, 0xFFFFFFFF)``::

    header  state u32 | sequence u32 | version u8 | 19 x FF | CRC of bytes 4..27 (u32)
    entry   ns u8 | type u8 | span u8 | chunk u8 | CRC of bytes 0..3, 8..31 (u32) | key[16] | data[8]

``encode_nvs(namespaces, size, family) -> bytes``: ``namespaces`` is an ordered sequence (or
mapping) of ``(namespace, [(key, type, value), ...])``, ``type`` a ``TYPE_CODES`` name, the value
an int for u8 ... i64, a str for "string", bytes for "blob" (written as a version-2 multi-page
blob).  The bytes are those Espressif's generator writes, for ``FAMILY_A`` (ESP-IDF v5.0/v5.1
in-tree script, PyPI 0.1.1-0.1.6, tools/at.py: every page but the reserved last one gets a FULL
header) or ``FAMILY_B`` (PyPI 0.1.7-0.3.0: the last page holding entries stays ACTIVE, later
pages stay erased).  FormatError refuses what the generator would crash on or the library would
misread: bad names, a namespace or key given twice, integers out of range, NUL in a string,
strings over ``MAX_STRING_CHARS`` bytes, content that does not fit.  Strings are UTF-8 in both
families (the in-tree family-A script corrupts non-ASCII ones).
``required_size(namespaces) -> int``: the smallest partition size that holds the content.
``decode_nvs(data) -> NvsImage``: pages, namespaces and items (blobs reassembled) in the order
the library reads them (pages by sequence number); ``NvsImage.namespace_items()`` is
encode_nvs's input again.  Malformed bytes raise FormatError with the offset of the fault; blob
chunks no index claims are ignored, as the library erases them at start-up.
"""
from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import FormatError

from .nvs_limits import (ENTRIES_PER_PAGE, ENTRY_SIZE, FAMILY_A, FAMILY_B, FIRST_ENTRY, INTEGER_FORMATS,
                         MAX_NAME_BYTES, MAX_STRING_CHARS, MIN_SIZE, PAGE_SIZE)
MAX_NAMESPACES = 254            # index 0 marks definitions, 255 means "any" in the library
MAX_BLOB_CHUNKS = 128           # chunk numbers 128-254 are the library's next version of a blob

STATE_EMPTY, STATE_ACTIVE, STATE_FULL, STATE_FREEING = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8
# 0 is what the library writes over a page it found corrupt; decode_nvs refuses it like any unknown state.
PAGE_STATES = {STATE_EMPTY: "EMPTY", STATE_ACTIVE: "ACTIVE", STATE_FULL: "FULL", STATE_FREEING: "FREEING"}
VERSION_1, VERSION_2 = 0xFF, 0xFE

TYPE_STRING, TYPE_BLOB_V1, TYPE_BLOB_CHUNK, TYPE_BLOB_INDEX = 0x21, 0x41, 0x42, 0x48
TYPE_CODES = {**{name: code for name, (code, _) in INTEGER_FORMATS.items()},
              "string": TYPE_STRING, "blob": TYPE_BLOB_CHUNK}
NAMESPACE_TYPE, CHUNK_NONE = 0x01, 0xFF

PAGE_HEADER = struct.Struct("<IIB19sI")      # state, sequence, version, reserved, CRC
ENTRY = struct.Struct("<BBBBI16s8s")         # ns, type, span, chunk, CRC, key, data
VARLEN_DATA = struct.Struct("<HHI")          # size, FF FF, CRC of the data entries' bytes
BLOB_INDEX_DATA = struct.Struct("<IBBH")     # total size, chunk count, chunk start, FF FF
_ENTRY_HEAD, _U32 = struct.Struct("<BBBB"), struct.Struct("<I")

_INTEGERS = {}     # name -> (code, Struct, lowest, highest, FF padding to 8 bytes)
for _name, (_code, _fmt) in INTEGER_FORMATS.items():
    _bytes = struct.calcsize(_fmt)
    _low = -(1 << (8 * _bytes - 1)) if _fmt[1].islower() else 0
    _INTEGERS[_name] = (_code, struct.Struct(_fmt), _low, _low + (1 << 8 * _bytes) - 1, b"\xff" * (8 - _bytes))
_INTEGER_CODES = {code: (name, packer) for name, (code, packer, *_) in _INTEGERS.items()}
_TYPE_NAMES = {**{code: name for code, (name, _) in _INTEGER_CODES.items()},
               TYPE_STRING: "string", TYPE_BLOB_V1: "blob", TYPE_BLOB_INDEX: "blob"}

_FF19, _ERASED_PAGE = b"\xff" * 19, b"\xff" * PAGE_SIZE
# Entries are only ever written in order, so a page's bitmap follows from its used count:
# n written pairs (10) then empty pairs (11); the pairs of entries 126-127 stay 11.
_BITMAPS = tuple((b"\xaa" * (n // 4) + bytes([0xFF & ~(0x55 & ((1 << 2 * (n % 4)) - 1))])).ljust(32, b"\xff")[:32]
                 for n in range(ENTRIES_PER_PAGE + 1))
_BYTE_STATES = tuple(bytes((b >> shift) & 3 for shift in (0, 2, 4, 6)) for b in range(256))
_WRITTEN, _ILLEGAL = 2, 1

Value = Union[int, str, bytes]
Namespaces = Sequence[Tuple[str, Sequence[Tuple[str, str, Value]]]]   # or a Mapping of the same


def _crc(data, start: int = 0xFFFFFFFF) -> int:
    return zlib.crc32(data, start)


def _entry(ns: int, code: int, span: int, chunk: int, key16: bytes, data8: bytes) -> bytes:
    head, body = _ENTRY_HEAD.pack(ns, code, span, chunk), key16 + data8
    return head + _U32.pack(_crc(body, _crc(head))) + body


# --- encoding --------------------------------------------------------------------------------
#
# Per-device runs encode thousands of images that share most items, so the pure steps (an item
# to its entry bytes, a blob at a given start entry to its chunks, a page header) are memoized.
# Only exact int and str values use the item memo, so True or 1.0 never reuse the entry of 1.

@functools.lru_cache(maxsize=1024)
def _page_header(state: int, sequence: int) -> bytes:
    crc = _crc(struct.pack("<IB", sequence, VERSION_2) + _FF19)
    return PAGE_HEADER.pack(state, sequence, VERSION_2, _FF19, crc)


def _where(ns_name, key) -> str:
    return f"namespace {ns_name!r}, key {key!r}"


@functools.lru_cache(maxsize=4096, typed=True)
def _name16(name, ns_name=None) -> bytes:
    what = f"namespace {ns_name!r}: key {name!r}" if ns_name is not None else f"namespace name {name!r}"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"NVS: {what} is not a string that UTF-8 can write") from None
    if not 0 < len(raw) <= MAX_NAME_BYTES or b"\0" in raw:
        raise FormatError(f"NVS: {what} is {len(raw)} bytes long; it must be 1 to {MAX_NAME_BYTES} bytes without NUL")
    return raw.ljust(16, b"\0")


def _whole_record(ns: int, ns_name, key, type_name, value) -> tuple:
    """(room limit, span, the entry and its data entries, None) of an item placed whole."""
    key16 = _name16(key, ns_name)
    integer = _INTEGERS.get(type_name)
    if integer is not None:
        code, packer, low, high, pad = integer
        if isinstance(value, bool) or not isinstance(value, int):
            raise FormatError(f"NVS: {_where(ns_name, key)}: {type_name} value {value!r} is not an integer")
        if not low <= value <= high:
            raise FormatError(f"NVS: {_where(ns_name, key)}: {type_name} value {value} is out of range {low}..{high}")
        return ENTRIES_PER_PAGE, 1, _entry(ns, code, 1, CHUNK_NONE, key16, packer.pack(value) + pad), None
    if type_name == "blob":
        raise FormatError(f"NVS: {_where(ns_name, key)}: blob value of type {type(value).__name__} is not bytes")
    if type_name != "string":
        raise FormatError(f"NVS: {_where(ns_name, key)}: unknown type {type_name!r}; expected one of "
                          f"{', '.join(TYPE_CODES)}")
    try:
        raw = value.encode("utf-8") + b"\0"
    except (AttributeError, UnicodeEncodeError):
        raise FormatError(f"NVS: {_where(ns_name, key)}: string value {value!r} is not a str that UTF-8 can write") \
            from None
    if len(raw) > MAX_STRING_CHARS + 1:
        raise FormatError(f"NVS: {_where(ns_name, key)}: the string is {len(raw) - 1} bytes; a string must fit one "
                          f"page, at most {MAX_STRING_CHARS} characters (UTF-8 bytes) + NUL")
    if b"\0" in raw[:-1]:
        raise FormatError(f"NVS: {_where(ns_name, key)}: the string holds a NUL, which would cut it short on the "
                          "device")
    span = 1 + (len(raw) + ENTRY_SIZE - 1) // ENTRY_SIZE
    data8 = VARLEN_DATA.pack(len(raw), 0xFFFF, _crc(raw))
    # A string never takes the last free entry of a page: used + span < 126.
    # Padded to whole entries, so that the next item on the page joins it in one write.
    data = raw.ljust((span - 1) * ENTRY_SIZE, b"\xff")
    return ENTRIES_PER_PAGE - 1, span, _entry(ns, TYPE_STRING, span, CHUNK_NONE, key16, data8) + data, None


_plain_record = functools.lru_cache(maxsize=4096)(_whole_record)


@functools.lru_cache(maxsize=1024)
def _namespace_record(ns: int, ns_key: bytes) -> tuple:
    """The record of the entry that gives namespace ``ns`` its name."""
    return ENTRIES_PER_PAGE, 1, _entry(0, NAMESPACE_TYPE, 1, CHUNK_NONE, ns_key, bytes([ns]) + _FF19[:7]), None
_PLAIN = (int, str)


def _records(namespaces: Namespaces) -> list:
    """One record per entry group, in image order: a _whole_record, or (0, ns, key, bytes) for
    a blob, which placement splits into chunks."""
    records, seen = [], {}
    append, plain = records.append, _plain_record
    for entry in (namespaces.items() if isinstance(namespaces, Mapping) else namespaces):
        try:
            ns_name, items = entry
        except (TypeError, ValueError):
            raise FormatError(f"NVS: {entry!r} is not a (namespace name, items) pair") from None
        if not isinstance(ns_name, str):
            raise FormatError(f"NVS: namespace name {ns_name!r} is not a string")
        ns_key = _name16(ns_name)
        if ns_name in seen:
            raise FormatError(f"NVS: namespace {ns_name!r} is given twice; list all its items under one entry")
        if len(seen) == MAX_NAMESPACES:
            raise FormatError(f"NVS: more than {MAX_NAMESPACES} namespaces, the most one image can index")
        ns = seen[ns_name] = len(seen) + 1
        append(_namespace_record(ns, ns_key))
        keys = set()
        for item in items:
            try:
                key, type_name, value = item
            except (TypeError, ValueError):
                raise FormatError(f"NVS: namespace {ns_name!r}: {item!r} is not a (key, type, value) triple") from None
            if value.__class__ in _PLAIN and key.__class__ is str and type_name.__class__ is str:
                record = plain(ns, ns_name, key, type_name, value)
            elif not isinstance(key, str) or not isinstance(type_name, str):
                raise FormatError(f"NVS: namespace {ns_name!r}: key {key!r} and type {type_name!r} must be strings")
            elif type_name == "blob" and isinstance(value, (bytes, bytearray, memoryview)):
                record = (0, ns, _name16(key, ns_name), bytes(value))
            else:
                record = _whole_record(ns, ns_name, key, type_name, value)
            if key in keys:
                raise FormatError(f"NVS: {_where(ns_name, key)} is given twice; the device would read only one")
            keys.add(key)
            append(record)
    return records


def _split_blob(ns: int, key16: bytes, used: int, payload: bytes) -> tuple:
    """A blob placed after ``used`` entries of a page, split as the generator does (§5):
    ((page offset, first entry, bytes), ...) one run a page, pages moved on, entries used."""
    runs, page, pos, chunk, total = [], 0, 0, 0, len(payload)

    def add(entries: bytes) -> None:
        # Chunks are padded to whole entries, so what follows on the same page joins their run.
        if runs and runs[-1][0] == page:
            runs[-1] = (page, runs[-1][1], runs[-1][2] + entries)
        else:
            runs.append((page, used, entries))
    if used == ENTRIES_PER_PAGE:
        page, used = 1, 0
    while True:
        # A chunk takes all the room left; with one free entry that is an empty chunk.
        piece = payload[pos:pos + (ENTRIES_PER_PAGE - 1 - used) * ENTRY_SIZE]
        span = 1 + (len(piece) + ENTRY_SIZE - 1) // ENTRY_SIZE
        data8 = VARLEN_DATA.pack(len(piece), 0xFFFF, _crc(piece))
        add(_entry(ns, TYPE_BLOB_CHUNK, span, chunk, key16, data8) + piece.ljust((span - 1) * ENTRY_SIZE, b"\xff"))
        used, pos, chunk = used + span, pos + len(piece), chunk + 1
        if used == ENTRIES_PER_PAGE:
            page, used = page + 1, 0
        if pos == total:
            break
    if chunk > MAX_BLOB_CHUNKS:
        raise FormatError(f"NVS: blob {key16.rstrip(bytes(1)).decode()!r} of {total} bytes takes {chunk} chunks; "
                          f"the NVS library reads at most {MAX_BLOB_CHUNKS}")
    add(_entry(ns, TYPE_BLOB_INDEX, 1, CHUNK_NONE, key16, BLOB_INDEX_DATA.pack(total, chunk, 0, 0xFFFF)))
    return tuple(runs), page, used + 1


# Certificates and keys are a few KiB; bigger blobs are not worth holding in memory.
_split_small_blob, _SMALL_BLOB = functools.lru_cache(maxsize=256)(_split_blob), 16384


def _layout(records, out: Optional[bytearray] = None) -> List[int]:
    """Place the records by the generator's rules, writing them into ``out`` when given.
    Returns how many entries each page uses."""
    used_counts: List[int] = []
    used, base = 0, FIRST_ENTRY
    run: List[bytes] = []     # whole records in a row on one page, written as one slice
    run_start = base

    def flush() -> None:
        if run and out is not None:
            data = b"".join(run)
            out[run_start:run_start + len(data)] = data
        run.clear()
    for limit, span, data, payload in records:
        if limit:
            if used + span > limit:
                flush()
                used_counts.append(used)
                used, base = 0, base + PAGE_SIZE
                run_start = base
            run.append(data)
            used += span
            continue
        flush()
        writes, pages, after = (_split_small_blob if len(payload) <= _SMALL_BLOB else _split_blob)(
            span, data, used, payload)
        if out is not None:
            for page, slot, entries in writes:
                offset = base + page * PAGE_SIZE + slot * ENTRY_SIZE
                out[offset:offset + len(entries)] = entries
        used_counts.extend([ENTRIES_PER_PAGE] * pages)
        used, base = after, base + pages * PAGE_SIZE
        run_start = base + used * ENTRY_SIZE
    flush()
    used_counts.append(used)
    return used_counts


def _size_for(pages: int) -> int:
    return max(MIN_SIZE, (pages + 1) * PAGE_SIZE)


def required_size(namespaces: Namespaces) -> int:
    """The smallest partition size (a multiple of 4096, at least 0x3000, the reserved last page
    included) that holds ``namespaces``.  Raises FormatError for content encode_nvs refuses."""
    return _size_for(len(_layout(_records(namespaces))))


def encode_nvs(namespaces: Namespaces, size: int, family: str) -> bytes:
    """The NVS partition image of ``namespaces``, ``size`` bytes, as generator ``family`` writes it."""
    needed, image = encode_if_fits(namespaces, size, family)
    if image is None:
        raise FormatError(f"NVS: the content needs {needed} bytes ({needed // PAGE_SIZE - 1} pages of data + 1 "
                          f"reserved), the partition has {size}")
    return image


def encode_if_fits(namespaces: Namespaces, size: int, family: str) -> Tuple[int, Optional[bytes]]:
    """(required_size, the image) in one pass; the image is None when the content needs more
    than ``size``.  Raises FormatError as encode_nvs does for content it refuses."""
    if family not in (FAMILY_A, FAMILY_B):
        raise FormatError(f"NVS: unknown generator family {family!r}; expected 'A' or 'B'")
    if not isinstance(size, int) or size % PAGE_SIZE or size < MIN_SIZE:
        raise FormatError(f"NVS: partition size {size!r} must be a multiple of 4096 and at least 0x3000 "
                          "(two pages of data and one reserved)")
    capacity = size // PAGE_SIZE - 1
    out = bytearray(_ERASED_PAGE) * (size // PAGE_SIZE)
    # Content that does not fit only lengthens ``out`` (a slice past the end appends) before
    # the check below refuses it.
    used_counts = _layout(_records(namespaces), out)
    pages = len(used_counts)
    if pages > capacity:
        return _size_for(pages), None
    used_counts += [0] * (capacity - pages)
    for page in range(capacity if family == FAMILY_A else pages):
        state = STATE_ACTIVE if family == FAMILY_B and page == pages - 1 else STATE_FULL
        out[page * PAGE_SIZE:page * PAGE_SIZE + 64] = _page_header(state, page) + _BITMAPS[used_counts[page]]
    return _size_for(pages), bytes(out)


# --- decoding --------------------------------------------------------------------------------

def looks_like_nvs(data) -> bool:
    """Whether bytes start like an NVS image: whole pages, the first one in use (ACTIVE or FULL)
    with a header whose CRC holds.  A cheap test for file-type detection; decode_nvs checks all."""
    if len(data) < PAGE_SIZE or len(data) % PAGE_SIZE:
        return False
    state, sequence, version, _, crc = PAGE_HEADER.unpack_from(data, 0)
    return state in (STATE_ACTIVE, STATE_FULL) and version in (VERSION_1, VERSION_2) \
        and crc == _crc(bytes(data[4:28]))


@dataclass(frozen=True)
class NvsPage:
    index: int
    offset: int
    state: str                  # a PAGE_STATES name
    sequence: Optional[int]     # None on an EMPTY page
    version: Optional[int]      # 2 (multi-page blobs) or 1; None on an EMPTY page


@dataclass(frozen=True)
class NvsNamespace:
    name: str
    index: int
    offset: int                 # of its definition entry


@dataclass(frozen=True)
class NvsItem:
    namespace: str
    key: str
    type: str                   # a TYPE_CODES name
    value: Value
    offset: int                 # of its entry; a version-2 blob's is that of its index entry


@dataclass(frozen=True)
class NvsImage:
    pages: Tuple[NvsPage, ...]
    namespaces: Tuple[NvsNamespace, ...]
    items: Tuple[NvsItem, ...]
    family: Optional[str]       # FAMILY_A or FAMILY_B when the page states follow one, else None

    def namespace_items(self) -> List[Tuple[str, List[Tuple[str, str, Value]]]]:
        """The content as encode_nvs takes it: namespaces in definition order, items in image order."""
        grouped: Dict[str, list] = {ns.name: [] for ns in self.namespaces}
        for item in self.items:
            grouped[item.namespace].append((item.key, item.type, item.value))
        return list(grouped.items())


def _family(states: List[str]) -> Optional[str]:
    pattern = "".join(state[:2] for state in states)     # EM, AC, FU, FR a page
    if re.fullmatch("(FU)+EM", pattern):
        return FAMILY_A
    return FAMILY_B if re.fullmatch("(FU)*AC(EM)+", pattern) else None


def _read_page(data: bytes, number: int) -> NvsPage:
    base = number * PAGE_SIZE
    state, sequence, version, _, crc = PAGE_HEADER.unpack_from(data, base)
    name = PAGE_STATES.get(state)
    if name is None:
        raise FormatError(f"NVS: page {number} has state word 0x{state:08x}, not one of "
                          f"{', '.join(PAGE_STATES.values())}", offset=base)
    if state == STATE_EMPTY:
        page = data[base:base + PAGE_SIZE]
        if page != _ERASED_PAGE:
            first = next(i for i, b in enumerate(page) if b != 0xFF)
            raise FormatError(f"NVS: page {number} is marked empty but is not erased", offset=base + first)
        return NvsPage(number, base, name, None, None)
    actual = _crc(data[base + 4:base + 28])
    if actual != crc:
        raise FormatError(f"NVS: page {number} header CRC is 0x{crc:08x}, its bytes give 0x{actual:08x}",
                          offset=base + 28)
    if version not in (VERSION_1, VERSION_2):
        raise FormatError(f"NVS: page {number} has format version byte 0x{version:02x}, expected FE or FF",
                          offset=base + 8)
    return NvsPage(number, base, name, sequence, 2 if version == VERSION_2 else 1)


def _text(raw: bytes, what: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"NVS: {what} is not UTF-8", offset=offset) from None


def _read_entries(data: bytes, page: NvsPage, raw_items: list, chunks: dict) -> None:
    """Check every written entry of one page; collect (ns, key, type code, value, offset) and chunks."""
    base = page.offset
    states = b"".join([_BYTE_STATES[b] for b in data[base + 32:base + 64]])[:ENTRIES_PER_PAGE]
    if _ILLEGAL in states:
        slot = states.index(_ILLEGAL)
        raise FormatError(f"NVS: page {page.index} bitmap gives entry {slot} the invalid state 01",
                          offset=base + 32 + slot // 4)
    slot = states.find(_WRITTEN)
    while slot >= 0:
        offset = base + FIRST_ENTRY + slot * ENTRY_SIZE
        ns, code, span, chunk, crc, key16, data8 = ENTRY.unpack_from(data, offset)
        actual = _crc(data[offset + 8:offset + 32], _crc(data[offset:offset + 4]))
        if actual != crc:
            raise FormatError(f"NVS: entry CRC is 0x{crc:08x}, its bytes give 0x{actual:08x}", offset=offset)
        if not 1 <= span <= ENTRIES_PER_PAGE - slot:
            raise FormatError(f"NVS: entry {slot} of page {page.index} has span {span}, which runs past the page",
                              offset=offset)
        if states.count(_WRITTEN, slot + 1, slot + span) != span - 1:
            raise FormatError(f"NVS: entry {slot} spans {span} entries, not all marked written", offset=offset)
        name, nul, _ = key16.partition(b"\0")
        if not nul or not name:
            raise FormatError("NVS: entry key is " + ("empty" if nul else "not NUL-terminated"), offset=offset + 8)
        key = _text(name, "entry key", offset + 8)
        if ns == 0 and code != NAMESPACE_TYPE:
            raise FormatError(f"NVS: namespace definition {key!r} has type 0x{code:02x}, not u8", offset=offset)
        if code in _INTEGER_CODES or code == TYPE_BLOB_INDEX:
            if span != 1:
                raise FormatError(f"NVS: a one-entry item (type 0x{code:02x}) has span {span}", offset=offset)
            value = data8 if code == TYPE_BLOB_INDEX else _INTEGER_CODES[code][1].unpack_from(data8)[0]
        elif code in (TYPE_STRING, TYPE_BLOB_V1, TYPE_BLOB_CHUNK):
            size, _, data_crc = VARLEN_DATA.unpack(data8)
            if span != 1 + (size + ENTRY_SIZE - 1) // ENTRY_SIZE:
                raise FormatError(f"NVS: entry of {size} data bytes has span {span}", offset=offset)
            value = data[offset + ENTRY_SIZE:offset + ENTRY_SIZE + size]
            if _crc(value) != data_crc:
                raise FormatError(f"NVS: data CRC of key {key!r} does not match its {size} bytes", offset=offset)
            if code == TYPE_STRING:
                if not size or value[-1] != 0:
                    raise FormatError(f"NVS: string {key!r} is not NUL-terminated", offset=offset)
                value = _text(value[:-1], f"string {key!r}", offset)
        else:
            raise FormatError(f"NVS: entry {key!r} has unknown type 0x{code:02x}", offset=offset)
        if code != TYPE_BLOB_CHUNK:
            raw_items.append((ns, key, code, value, offset))
        elif (ns, key, chunk) in chunks:
            raise FormatError(f"NVS: chunk {chunk} of blob {key!r} appears twice", offset=offset)
        else:
            chunks[(ns, key, chunk)] = value
        slot = states.find(_WRITTEN, slot + span)


def _blob_value(ns: int, key: str, index8: bytes, offset: int, chunks: dict) -> bytes:
    total, count, start, _ = BLOB_INDEX_DATA.unpack(index8)
    pieces = [chunks.get((ns, key, number)) for number in range(start, start + count)]
    if None in pieces:
        raise FormatError(f"NVS: blob {key!r} lists {count} chunks from {start}, chunk "
                          f"{start + pieces.index(None)} is missing", offset=offset)
    value = b"".join(pieces)
    if len(value) != total:
        raise FormatError(f"NVS: blob {key!r} index says {total} bytes, its chunks hold {len(value)}", offset=offset)
    return value


def decode_nvs(data) -> NvsImage:
    """Read an NVS partition image.  Raises FormatError (with the offset) for anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_nvs takes bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data or len(data) % PAGE_SIZE:
        raise FormatError(f"NVS: an image is a whole number of 4096-byte pages, this one is {len(data)} bytes",
                          offset=len(data) - len(data) % PAGE_SIZE)
    pages = tuple(_read_page(data, n) for n in range(len(data) // PAGE_SIZE))
    raw_items: list = []
    chunks: dict = {}
    for page in sorted((p for p in pages if p.sequence is not None), key=lambda p: p.sequence):
        _read_entries(data, page, raw_items, chunks)
    namespaces: Dict[int, NvsNamespace] = {}
    names = set()
    for ns, key, code, value, offset in raw_items:
        if ns == 0:
            if not 1 <= value <= MAX_NAMESPACES or value in namespaces or key in names:
                raise FormatError(f"NVS: namespace {key!r} has index {value}: out of range, taken, or the name is "
                                  "defined twice", offset=offset)
            namespaces[value] = NvsNamespace(key, value, offset)
            names.add(key)
    items = []
    for ns, key, code, value, offset in raw_items:
        if ns == 0:
            continue
        if ns not in namespaces:
            raise FormatError(f"NVS: key {key!r} is in namespace index {ns}, which no entry defines", offset=offset)
        if code == TYPE_BLOB_INDEX:
            value = _blob_value(ns, key, value, offset, chunks)
        items.append(NvsItem(namespaces[ns].name, key, _TYPE_NAMES[code], value, offset))
    return NvsImage(pages, tuple(namespaces.values()), tuple(items), _family([p.state for p in pages]))
