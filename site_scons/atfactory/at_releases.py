"""The ESP-AT releases a board can target, and what differs between their generators.

A board's ``[module] at_version`` names one of these; each chip in ``chips.CHIPS`` says which
of them exist for it.  Where two releases of one minor version encode something differently,
each gets its own entry.

Two generations: up to v3.0 ("v2") the customized data are factory_param.bin, the twelve
certificate and key partitions and ble_data.bin; from v3.1 ("mfg_nvs") one NVS partition,
made by generator family A (ESP-IDF's in-tree nvs_partition_gen, v3.1 to v4.0) or B (PyPI's
esp-idf-nvs-partition-gen 0.1.7 and later, v4.1 on), which differ only in page state words.
"""
from __future__ import annotations

from typing import Dict, Iterable, NamedTuple, Optional

V2, MFG_NVS = "v2", "mfg_nvs"
# mfg_nvs's certificate namespaces, in the order ESP-AT's build writes them; https/wss from v4.1.
MFG_NVS_USES = ("server", "client", "wpa2", "mqtt", "https", "wss")
MFG_NVS_ROLES = ("cert", "key", "ca")
MFG_NVS_SETS = tuple(f"{use}_{role}" for use in MFG_NVS_USES for role in MFG_NVS_ROLES)
# Every namespace ESP-AT's build writes into mfg_nvs; a board's own namespaces take other names.
MFG_NVS_NAMESPACES = MFG_NVS_SETS + ("factory_param", "ble_data")


class AtRelease(NamedTuple):
    version: str                 # as written in board files: "2.4"
    title: str                   # as people read it
    pki_typed_by_kind: bool      # v2: certificate/key items typed by kind (ca 1, cert 2, key 3); else all 2
    generation: str = V2
    nvs_family: Optional[str] = None   # mfg_nvs: the generator family, "A" or "B"
    sys_store: bool = False      # mfg_nvs: factory_param.sys_store exists
    https_wss: bool = False      # mfg_nvs: the https_* and wss_* certificate namespaces exist
    factory_param_layout: int = 3      # v2: the factory_param layout (factory_param.LAYOUTS)
    gatt_python2_order: bool = False   # v2: ble_data's JSON keys in Python 2's dict order, not the CSV's


def _nvs(version: str, family: str, later: bool = False) -> AtRelease:
    return AtRelease(version, f"ESP-AT v{version}", True, MFG_NVS, family, sys_store=later, https_wss=later)


# Oldest first, the order messages list them in.  v2.0 and v2.1 ran their generators under
# Python 2 (ble_data's key order); v2.2.0.0 to v2.4.0.0 typed every certificate item 2.
AT_RELEASES: Dict[str, AtRelease] = {r.version: r for r in (
    AtRelease("2.0", "ESP-AT v2.0", True, factory_param_layout=1, gatt_python2_order=True),
    AtRelease("2.1", "ESP-AT v2.1", True, factory_param_layout=2, gatt_python2_order=True),
    AtRelease("2.2", "ESP-AT v2.2", pki_typed_by_kind=False),
    AtRelease("2.3", "ESP-AT v2.3", pki_typed_by_kind=False),
    AtRelease("2.4.0", "ESP-AT v2.4.0.0", pki_typed_by_kind=False),
    AtRelease("2.4", "ESP-AT v2.4 (v2.4.1.0 and later)", pki_typed_by_kind=True),
    AtRelease("3.0", "ESP-AT v3.0 (still the v2 formats)", pki_typed_by_kind=True),
    _nvs("3.1", "A"), _nvs("3.2", "A"), _nvs("3.3", "A"), _nvs("3.4", "A"), _nvs("4.0", "A"),
    _nvs("4.1", "B", later=True), _nvs("5.0", "B", later=True),
)}
DEFAULT_AT_VERSION = "2.4"
V2_RELEASES = tuple(v for v, r in AT_RELEASES.items() if r.generation == V2)


def is_v2(at_version: Optional[str]) -> bool:
    """Whether a board of this release has the v2 partitions (an unknown release counts as v2:
    the board checks report it)."""
    release = AT_RELEASES.get(at_version) if at_version else None
    return release is None or release.generation == V2


GENERATION_TITLES = {V2: "ESP-AT v2 (factory_param and certificate partitions)", MFG_NVS: "ESP-AT v3.1+ (mfg_nvs)"}


def describe_generations(versions: Iterable[str]) -> str:
    """The generations of these releases as people read them: 'ESP-AT v3.1+ (mfg_nvs)'."""
    return " or ".join(GENERATION_TITLES[g] for g in sorted({AT_RELEASES[v].generation for v in versions}))


def describe_versions(versions: Iterable[str]) -> str:
    """'"2.4" or "2.2"', '"2.4", "2.2" or "2.0"'."""
    quoted = [f'"{v}"' for v in versions]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
