"""Partition formats and their registry: one object per format, everything it takes part in.

A :class:`PartitionFormat` says which AT partitions it makes content for and, for those, how
the content is read and checked from a board (:meth:`~PartitionFormat.read`), rendered
(:meth:`~PartitionFormat.render`), recognised and decoded from bytes, explained when
``verify`` finds a difference, written back as sources by ``extract``, and described for
``inspect`` and the flash map.  The rest of the library asks the :class:`FormatRegistry`
instead of testing partition names or kinds.

The stock formats are registered by the built-in plugin through the
``atfactory_register_formats`` hook, like any vendor's format; a duplicate kind is refused
naming both plugins.  :func:`stock_registry` is the registry of a session without plugins
(library calls, tests).
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..errors import FormatError, PluginError
from ..pki import ROLES as CERTIFICATE_ROLES
from ..pki import USES as CERTIFICATE_USES


class CertificateFile(NamedTuple):
    """One certificate, key or CA file of a board, wherever its format puts it."""
    use: str                      # "server", "client", ...
    role: str                     # "cert", "key" or "ca"
    path: str
    public_key: Optional[bytes]   # DER SubjectPublicKeyInfo; None when not parsed
    partition: str                # the partition that holds it
    key: str                      # the board key that names it, relative to the partition: "source"

    @property
    def set_name(self) -> str:
        return f"{self.use}_{self.role}"


@dataclass(frozen=True)
class Content:
    """What a partition holds, checked: enough to render it and to cross-check the board."""
    kind: str                         # the format's kind
    size: int                         # encoded size in bytes
    spec: Dict[str, object]           # the board values the bytes depend on (JSON-able)
    sources: Tuple[str, ...]          # input files, in the order they are read
    secret: bool = False              # holds private keys: written owner-readable only
    certificates: Tuple[CertificateFile, ...] = ()
    data: Optional[bytes] = field(default=None, compare=False, repr=False)   # rendered already (ctx.render)

    @property
    def public_keys(self) -> Optional[Tuple[bytes, ...]]:
        """The public keys of its certificate files, in order; None when they were not parsed."""
        return public_keys(self.certificates)


def public_keys(files: Sequence[CertificateFile]) -> Optional[Tuple[bytes, ...]]:
    """The public keys of these files, in order; None when any was not parsed."""
    if any(f.public_key is None for f in files):
        return None
    return tuple(f.public_key for f in files)


class ReadContext(NamedTuple):
    """What a format may read from the board besides its own partition."""
    at_version: str
    factory_param: Optional[Mapping[str, object]] = None   # every checked [factory_param] value
    cache: bool = True     # False keeps per-device files (tens of thousands) out of the input cache
    parse: bool = True     # False skips parsing certificates and keys already checked
    tables: Optional[Mapping[str, object]] = None   # the merged board data (formats read their own tables)
    partition_size: Optional[int] = None            # of the partition being read
    # Per-device builds: ``memo`` is a store that lives as long as the batch, for what the board
    # itself holds (its certificate sets, read once); ``read`` reads the row's files (the caller
    # keeps what it read); ``render`` asks for Content.data, the bytes, when the format can make
    # them in the same pass.
    memo: Optional[dict] = None
    read: Optional[Callable[[str], bytes]] = None
    render: bool = False


class ModuleSettings(NamedTuple):
    """What a decoded partition says about the module: the board's [module] and [factory_param]."""
    module_name: str
    platform: Optional[str]
    factory_param: Dict[str, object]


class ImageCertificate(NamedTuple):
    """A certificate or key as stored in an image, for verify's pair check."""
    use: str
    role: str
    id: int
    content: bytes


class PartitionFormat:
    """Base of every partition format.  Override what the format takes part in.

    Class attributes: ``kind`` (unique; also the kind of its artifacts), ``label`` (shown for
    each target the build writes, at most 6 characters), ``builder`` (the SCons builder's
    name), ``fallback`` (claims any partition no other format claims).
    """
    kind = ""
    label = ""
    builder = ""
    fallback = False
    reads_factory_param = False   # its content depends on [factory_param] (per-device columns)
    reads_vendor_namespaces = False   # ... and on [mfg_nvs.namespaces] (mfg_nvs.<ns>.<key> columns)

    # -- the board side ------------------------------------------------------------------
    def claims(self, name: str, at_version: str) -> bool:
        """Whether this format makes the content of partition ``name`` at this AT release."""
        return False

    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        """Check the inputs of partition ``name``; None when it has no content.  Raises ContentError."""
        return None

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        """The partition's bytes from exactly the recorded spec and input files."""
        raise NotImplementedError(f"format {self.kind} renders nothing")

    def extra_targets(self, partition_name: str, module_name: str) -> Tuple[str, ...]:
        """Names of further files with the same bytes (factory_param_<MODULE>), without .bin."""
        return ()

    def board_problems(self, names: Sequence[str], at_version: Optional[str], data: Mapping[str, object]):
        """(dotted key, message, value or None) for what this format requires of a whole board."""
        return ()

    def firmware_releases(self, entries: Sequence[Tuple[str, int, int]], contents: Mapping[str, bytes]):
        """The AT releases a firmware can be, from its own at_customize entries (name, type,
        subtype) and AT partitions' bytes (by name), where this format's partition says; else None."""
        return None

    def certificate_slots(self, name: str, at_version: str) -> Tuple[str, ...]:
        """The certificate sets ("client_cert", ...) partition ``name`` can hold: per-device columns."""
        return ()

    def read_certificates(self, name: str, sets: Mapping[str, Sequence[str]], ctx: ReadContext) -> Content:
        """The partition's content with these certificate sets (set name -> files) in it (per device)."""
        raise NotImplementedError(f"format {self.kind} holds no certificate sets")

    def board_map_detail(self, content: Content) -> str:
        """The flash map's label for a board partition with this content."""
        return self.kind

    # -- the bytes side ------------------------------------------------------------------
    def detect(self, data: bytes) -> bool:
        """Whether a whole file of these bytes is a partition of this format (by its magic)."""
        return False

    def detect_name(self, base_name: str) -> bool:
        """Whether a file of this (lower-cased) name is of this format when no magic matched."""
        return False

    def decode(self, data: bytes, name: str = "") -> dict:
        """A JSON-ready document with ``"kind": self.kind``.  Raises FormatError."""
        raise FormatError(f"no decoder for {self.kind}")

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        """Why the image's bytes differ from the board's, in words; None to fall back to an offset."""
        return None

    def module_settings(self, doc: dict) -> Optional[ModuleSettings]:
        """What a decoded partition says about the module, if it is where the module settings live."""
        return None

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        """The AT releases whose generator writes these decoded bytes; None: any release."""
        return None

    def image_certificates(self, name: str, doc: dict, raw: bytes) -> List[ImageCertificate]:
        """Certificates and keys the partition holds, for verify's pair check."""
        return []

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        """Write the sources that rebuild ``raw`` into ``src_dir``; return their paths."""
        return []

    def extract_tables(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> Dict[str, dict]:
        """Board tables (besides the partition's ``source``) that rebuild ``raw``: {table: {key: value}}."""
        return {}

    def describe(self, doc: dict) -> List[str]:
        """Lines for ``inspect``'s text output."""
        return []

    def map_detail(self, doc: dict) -> str:
        """The flash map's label for a decoded partition of this format."""
        return self.kind


class FormatRegistry:
    """Formats by kind, in registration order; remembers which plugin contributed each."""

    def __init__(self):
        self._formats: Dict[str, PartitionFormat] = {}
        self._owners: Dict[str, str] = {}

    def add(self, fmt: PartitionFormat, plugin: str = "atfactory") -> None:
        """Raises PluginError; the hook wrapper adds the name of the plugin that called."""
        if not isinstance(fmt, PartitionFormat):
            raise PluginError(f"{type(fmt).__name__} is not a format; accepted: an instance of a subclass of "
                              "atfactory.formats.PartitionFormat")
        if not isinstance(fmt.kind, str) or not fmt.kind:
            raise PluginError(f"{type(fmt).__name__} has no kind; set the class attribute kind to a name of its own")
        if fmt.kind in self._formats:
            raise PluginError(f"format {fmt.kind!r} is already registered by plugin {self._owners[fmt.kind]}; "
                              "each format needs a kind of its own")
        self._formats[fmt.kind] = fmt
        self._owners[fmt.kind] = plugin

    def registrar(self, plugin: str) -> "FormatRegistrar":
        return FormatRegistrar(self, plugin)

    def __iter__(self) -> Iterator[PartitionFormat]:
        return iter(list(self._formats.values()))

    def __contains__(self, kind: str) -> bool:
        return kind in self._formats

    def owner(self, kind: str) -> str:
        return self._owners[kind]

    def get(self, kind: str) -> Optional[PartitionFormat]:
        return self._formats.get(kind)

    def __getitem__(self, kind: str) -> PartitionFormat:
        return self._formats[kind]

    def for_partition(self, name: str, at_version: str) -> PartitionFormat:
        """The format that makes partition ``name``'s content: the first that claims it, else the fallback."""
        for fmt in self._formats.values():
            if not fmt.fallback and fmt.claims(name, at_version):
                return fmt
        for fmt in self._formats.values():
            if fmt.fallback:
                return fmt
        raise LookupError(f"no format claims partition {name!r} and none is registered as the fallback")

    def firmware_releases(self, entries: Sequence[Tuple[str, int, int]], contents: Mapping[str, bytes]) -> Optional[frozenset]:
        """The AT releases a firmware can be, as every format that can tell from its at_customize
        entries and AT partitions' bytes says (``PartitionFormat.firmware_releases``); None: none can."""
        versions = None
        for fmt in self._formats.values():
            implied = fmt.firmware_releases(entries, contents)
            if implied is not None:
                versions = implied if versions is None else versions & implied
        return versions

    def detect(self, data: bytes, name: str = "") -> Optional[PartitionFormat]:
        """The format of a whole file: by magic first, then by file name."""
        for fmt in self._formats.values():
            if fmt.detect(data):
                return fmt
        base = os.path.basename(name).lower()
        for fmt in self._formats.values():
            if base and fmt.detect_name(base):
                return fmt
        return None


class FormatRegistrar:
    """What ``atfactory_register_formats`` receives: ``registry.add(format)``."""

    def __init__(self, registry: FormatRegistry, plugin: str):
        self._registry = registry
        self._plugin = plugin

    def add(self, fmt: PartitionFormat) -> None:
        self._registry.add(fmt, self._plugin)


def stock_formats() -> List[PartitionFormat]:
    """atfactory's own formats, in the order they are asked (the fallback last)."""
    from .ble_data import BleDataFormat
    from .factory_param import FactoryParamFormat
    from .partition_table import AtCustomizeFormat
    from .pki import PkiFormat
    from .plugin import PluginFormat
    from .mfg_nvs import MfgNvsFormat
    from .raw import RawFormat

    return [FactoryParamFormat(), PkiFormat(), BleDataFormat(), MfgNvsFormat(), AtCustomizeFormat(), PluginFormat(),
            RawFormat()]


@functools.lru_cache(maxsize=1)
def stock_registry() -> FormatRegistry:
    """The registry of a session with no plugins: the built-in plugin's formats only."""
    from .. import builtin_plugin

    registry = FormatRegistry()
    builtin_plugin.atfactory_register_formats(registry.registrar(builtin_plugin.NAME))
    return registry


def certificate_sets(contents: Sequence[Content]) -> Dict[str, List[CertificateFile]]:
    """Every certificate file of these contents, by set name ("server_cert"), in order."""
    sets: Dict[str, List[CertificateFile]] = {}
    for content in contents:
        for cert in content.certificates:
            sets.setdefault(cert.set_name, []).append(cert)
    return sets


__all__ = ["CERTIFICATE_USES", "CERTIFICATE_ROLES", "CertificateFile", "Content", "ReadContext",
           "ModuleSettings", "ImageCertificate", "PartitionFormat", "FormatRegistry", "FormatRegistrar",
           "stock_formats", "stock_registry", "certificate_sets"]
