"""Finding plugins, calling their hooks, and the registries they contribute through.

``make_plugin_host`` builds the pluggy manager: hook specs, the built-in plugin (the stock
boards), installed packages of the entry-point group ``atfactory``, every module of each folder
it is given (the SConstruct's ``plugins/`` where there is one, ``plugins=DIR1,DIR2``, a
project's ``plugins``), less the names in ``ATFACTORY_DISABLE_PLUGINS``.  Every hook call goes through :meth:`PluginHost.call`,
which names the plugin and the hook when one fails.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pluggy

from . import hookspecs
from .errors import AtFactoryError, PluginError, display_path
from .registry import BoardRegistry

ENTRY_POINT_GROUP = "atfactory"
DISABLE_ENV = "ATFACTORY_DISABLE_PLUGINS"


@dataclass
class PluginInfo:
    name: str
    origin: str          # "built-in", "entry point (dist 1.0)", "plugins/acme.py"
    version: str = ""
    hooks: List[str] = field(default_factory=list)


class BoardRegistrar:
    """What ``atfactory_register_boards`` receives: adds boards, remembering the plugin."""

    def __init__(self, registry: BoardRegistry, plugin: str, base: Optional[str] = None):
        self._registry = registry
        self._plugin = plugin
        self._base = base

    def add(self, path: str, board_id: Optional[str] = None) -> None:
        if self._base and not os.path.isabs(path):
            path = os.path.join(self._base, path)
        if not os.path.isfile(path):
            raise PluginError(f"board file {display_path(path)} does not exist")
        self._registry.add(path, board_id, origin=f"plugin {self._plugin}")

    def add_folder(self, folder: str) -> None:
        if self._base and not os.path.isabs(folder):
            folder = os.path.join(self._base, folder)
        self._registry.add_folder(folder, origin=f"plugin {self._plugin}")


@dataclass(frozen=True)
class PluginPartition:
    plugin: str
    name: str
    type: int
    subtype: int
    size: int
    offset: Optional[int]
    build: Callable
    inputs: Tuple[str, ...]
    values: object
    secret: bool


class PartitionRegistrar:
    """What ``atfactory_register_partitions`` receives."""

    def __init__(self, plugin: str, sink: List[PluginPartition]):
        self._plugin = plugin
        self._sink = sink

    def add(self, name: str, *, subtype: int, size, build: Callable, type: int = 0x40,
            offset=None, inputs: Sequence[str] = (), values=None, secret: bool = False) -> None:
        if not callable(build):
            raise PluginError(f"partition {name!r}: build must be a function (board, inputs) -> bytes")
        if any(p.name == name for p in self._sink):
            other = next(p for p in self._sink if p.name == name)
            raise PluginError(f"partition {name!r} was already added by plugin {other.plugin}")
        self._sink.append(PluginPartition(self._plugin, name, type, subtype, size, offset, build,
                                          tuple(os.path.abspath(i) for i in inputs), values, secret))


def call_build(plugin: str, partition: str, build: Callable, board, inputs: Sequence[str]) -> bytes:
    """Every call of a plugin partition's build function goes through here: it names the plugin
    and partition when the function raises or returns anything but bytes."""
    try:
        data = build(board, tuple(inputs))
    except AtFactoryError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {plugin}: partition {partition}: build raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, (bytes, bytearray)):
        raise PluginError(f"plugin {plugin}: partition {partition}: build returned {type(data).__name__}, "
                          "expected bytes")
    return bytes(data)


class PluginHost:
    def __init__(self, pm: pluggy.PluginManager, infos: Dict[str, PluginInfo]):
        self.pm = pm
        self.infos = infos
        self._formats = None

    # -- calling -------------------------------------------------------------------------
    def impls(self, hook_name: str):
        """Implementations in the order pluggy calls them (last registered first; tryfirst/trylast honoured)."""
        return list(reversed(getattr(self.pm.hook, hook_name).get_hookimpls()))

    def call(self, hook_name: str, **kwargs) -> List[Tuple[str, object]]:
        results = []
        for impl in self.impls(hook_name):
            args = [kwargs[a] for a in impl.argnames]
            results.append((impl.plugin_name, self.call_impl(impl, hook_name, args)))
        return results

    def call_impl(self, impl, hook_name: str, args):
        try:
            return impl.function(*args)
        except AtFactoryError as exc:
            raise PluginError(f"plugin {impl.plugin_name}: {hook_name}: {exc}") from exc
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name}: {hook_name} raised {type(exc).__name__}: {exc}") from exc

    # -- the hooks, as the build uses them ----------------------------------------------
    def formats(self):
        """The session's format registry: every plugin's ``atfactory_register_formats``, once."""
        if self._formats is None:
            from .formats import FormatRegistry

            registry = FormatRegistry()
            for impl in self.impls("atfactory_register_formats"):
                self.call_impl(impl, "atfactory_register_formats", [registry.registrar(impl.plugin_name)])
            self._formats = registry
        return self._formats

    def register_boards(self, registry: BoardRegistry) -> None:
        for impl in self.impls("atfactory_register_boards"):
            base = getattr(impl.plugin, "__file__", None)
            registrar = BoardRegistrar(registry, impl.plugin_name, os.path.dirname(base) if base else None)
            self.call_impl(impl, "atfactory_register_boards", [registrar])

    def board_tables(self) -> Dict[str, Callable]:
        tables: Dict[str, Callable] = {}
        owners: Dict[str, str] = {}
        for plugin, declared in self.call("atfactory_board_tables"):
            for name, checker in (declared or {}).items():
                if name in owners:
                    raise PluginError(f"plugin {plugin}: atfactory_board_tables: table [{name}] is already "
                                      f"declared by plugin {owners[name]}")
                owners[name] = plugin
                tables[name] = _table_checker(plugin, name, checker)
        return tables

    def configure_board(self, board) -> List[Tuple[str, dict]]:
        overlays = []
        for plugin, result in self.call("atfactory_configure_board", board=board):
            if result is None:
                continue
            if not isinstance(result, dict):
                raise PluginError(f"plugin {plugin}: atfactory_configure_board returned {type(result).__name__}; "
                                  "expected None or a dict shaped like a board file")
            overlays.append((plugin, result))
        return overlays

    def register_partitions(self, board) -> List[PluginPartition]:
        sink: List[PluginPartition] = []
        for impl in self.impls("atfactory_register_partitions"):
            self.call_impl(impl, "atfactory_register_partitions",
                           [{"board": board, "registry": PartitionRegistrar(impl.plugin_name, sink)}[a]
                            for a in impl.argnames])
        return sink

    def pre_merge(self, board, images: list) -> None:
        self.call("atfactory_pre_merge", board=board, images=images)

    def post_build(self, board, outputs: Dict[str, str]) -> None:
        self.call("atfactory_post_build", board=board, outputs=outputs)

    # -- listing -------------------------------------------------------------------------
    def describe(self) -> List[PluginInfo]:
        for info in self.infos.values():
            plugin = self.pm.get_plugin(info.name)
            info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or []) if plugin else []
        return sorted(self.infos.values(), key=lambda i: (i.origin != "built-in", i.name))

    def versions(self) -> Dict[str, str]:
        return {i.name: i.version for i in self.infos.values()}


def _table_checker(plugin: str, table: str, checker):
    def check(path: str, data: dict, problems: list) -> None:
        if checker is None:
            return
        from .errors import Problem

        try:
            messages = checker(data) or []
        except Exception as exc:
            messages = [f"plugin {plugin} could not check it: {type(exc).__name__}: {exc}"]
        for message in messages:
            problems.append(Problem(path, table, message))
    return check


def disabled_plugins(environ=os.environ) -> List[str]:
    return [n.strip() for n in environ.get(DISABLE_ENV, "").split(",") if n.strip()]




_GROUP_HEADER = r"^[ \t]*\[[ \t]*{}[ \t]*\]"   # a section line of entry_points.txt


def may_declare_entry_points(group: str, path: Optional[Sequence[str]] = None) -> bool:
    """False only when no distribution on ``path`` (sys.path) can declare an entry point of
    ``group``: none of their ``entry_points.txt`` files has a ``[group]`` section.

    pluggy's scan (``importlib.metadata``) costs a no-op build more than all of its board
    checks; this reads the same files without importing it.  Anything it does not read as
    importlib.metadata would (a zip or egg on the path, a finder of distributions other than
    the standard one) answers True, and pluggy scans."""
    import re

    if any(hasattr(f, "find_distributions") and f is not _path_finder() for f in sys.meta_path):
        return True
    header = re.compile(_GROUP_HEADER.format(re.escape(group)), re.M)
    for entry in sys.path if path is None else path:
        folder = entry or "."
        if folder.lower().endswith(".egg") or os.path.isfile(folder):
            return True
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), encoding="utf-8", errors="replace") as f:
                    if header.search(f.read()):
                        return True
            except FileNotFoundError:
                continue
            except OSError:   # NotADirectoryError (an .egg-info file) is one: it declares nothing
                if os.path.isdir(os.path.join(folder, name)):
                    return True
    return False


def _path_finder():
    import importlib.machinery
    return importlib.machinery.PathFinder


def make_plugin_host(extra_dirs: Sequence[str] = (), disabled: Optional[Sequence[str]] = None,
                     entry_points: bool = True) -> PluginHost:
    """The plugin manager of one build.  Made on demand, never at import."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = list(disabled_plugins() if disabled is None else disabled)
    for name in disabled:
        pm.set_blocked(name)
    infos: Dict[str, PluginInfo] = {}

    from . import builtin_plugin
    if not pm.is_blocked(builtin_plugin.NAME):
        pm.register(builtin_plugin, name=builtin_plugin.NAME)
        infos[builtin_plugin.NAME] = PluginInfo(builtin_plugin.NAME, "built-in", _own_version())

    if entry_points and may_declare_entry_points(ENTRY_POINT_GROUP):
        before = set(pm.get_plugins())
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise PluginError(f"an installed plugin of entry-point group '{ENTRY_POINT_GROUP}' failed to load: "
                              f"{type(exc).__name__}: {exc}") from exc
        for plugin, dist in pm.list_plugin_distinfo():
            if plugin in before:
                continue
            name = pm.get_name(plugin)
            infos[name] = PluginInfo(name, f"entry point of {dist.project_name} {dist.version}", str(dist.version))

    for folder in dict.fromkeys(os.path.abspath(d) for d in extra_dirs):
        if not os.path.isdir(folder):
            raise PluginError(f"plugins={display_path(folder)}: no such folder")
        for entry in sorted(os.listdir(folder)):
            path = os.path.join(folder, entry)
            if entry.startswith(("_", ".")):
                continue
            if entry.endswith(".py") and os.path.isfile(path):
                name = entry[:-3]
            elif os.path.isfile(os.path.join(path, "__init__.py")):
                name, path = entry, os.path.join(path, "__init__.py")
            else:
                continue
            if pm.is_blocked(name):
                continue
            if pm.get_plugin(name) is not None:
                raise PluginError(f"plugin {name} ({display_path(path)}) has the name of a plugin already loaded "
                                  f"from {infos[name].origin}; rename one of them")
            module = _import_file(name, path)
            pm.register(module, name=name)
            infos[name] = PluginInfo(name, display_path(path), str(getattr(module, "__version__", "")))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin if isinstance(exc.plugin, str) else pm.get_name(exc.plugin)}: {exc}") from None
    return PluginHost(pm, infos)


def make_session(extra_dirs: Sequence[str] = (), disabled: Optional[Sequence[str]] = None,
                 board_dirs: Sequence[str] = ()):
    """(plugin host, board registry): the plugins of a session and every board they know, and
    the boards of ``board_dirs`` (a project's boards folders) after them."""
    host = make_plugin_host(extra_dirs, disabled)
    registry = BoardRegistry()
    host.register_boards(registry)
    for folder in board_dirs:
        registry.add_folder(os.path.abspath(folder), origin=f"project {display_path(folder)}")
    return host, registry


def _import_file(name: str, path: str):
    module_name = f"atfactory_plugin_{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise PluginError(f"plugin {name} ({display_path(path)}) failed to load: {type(exc).__name__}: {exc}") from exc
    return module


def _own_version() -> str:
    from . import __version__
    return __version__
