"""Which ``StoreConfig`` class handles which locator scheme.

There is one :data:`registry` instance. Built-in schemes are entered as lazy
``"module:attr"`` strings, so ``import metalab.store`` stays cheap; third-party stores
register either by subclassing :class:`~metalab.store.abc.StoreConfig` with a
``scheme`` class variable (registration happens when their module is imported) or by
declaring an entry point in the ``metalab.stores`` group, named after the scheme::

    [project.entry-points."metalab.stores"]
    myscheme = "mypackage.store:MyStoreConfig"

Entry points are read only when a scheme is not otherwise known, and a plugin that
fails to import raises :class:`~metalab.errors.RegistryError` naming it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, cast

from metalab.errors import RegistryError, UnknownSchemeError

if TYPE_CHECKING:
    from metalab.store.abc import StoreConfig

__all__ = ["ENTRY_POINT_GROUP", "ConfigRegistry", "registry"]

ENTRY_POINT_GROUP: Final = "metalab.stores"

_STORE_CONFIG: Final = "metalab.store.abc:StoreConfig"

_BUILTINS: Final = {
    "file": "metalab.store._file:FileStoreConfig",
    "memory": "metalab.store._memory:MemoryStoreConfig",
    "postgresql": "metalab.store._postgres:PostgresStoreConfig",
    "postgres": "metalab.store._postgres:PostgresStoreConfig",
}


def _qualified(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _is_store_config(cls: type) -> bool:
    return _qualified(cls) == _STORE_CONFIG


class ConfigRegistry:
    """A mapping from locator scheme to ``StoreConfig`` class (or a lazy import path).

    Args:
        builtins: Schemes registered up front, as ``"module:attr"`` strings.
        entry_point_group: The entry-point group read for plugins (``None``: none).
    """

    def __init__(
        self,
        builtins: Mapping[str, str] = _BUILTINS,
        entry_point_group: str | None = ENTRY_POINT_GROUP,
    ) -> None:
        self._entries: dict[str, type[StoreConfig] | str] = dict(builtins)
        self._group = entry_point_group
        self._entry_points_read = entry_point_group is None

    @property
    def entries(self) -> Mapping[str, type[StoreConfig] | str]:
        """A read-only view of the registered schemes (classes or lazy paths)."""
        return MappingProxyType(self._entries)

    def known(self) -> list[str]:
        """Return every registered scheme, plugins included, sorted."""
        self._read_entry_points()
        return sorted(self._entries)

    def register(
        self, scheme: str, target: type[StoreConfig] | str, *, clobber: bool = False
    ) -> None:
        """Register ``target`` (a class or ``"module:attr"``) for ``scheme``.

        Registering the same class again (same module and qualified name, as when a
        module is reloaded) is allowed; a different one needs ``clobber=True``.

        Raises:
            RegistryError: The scheme is invalid or taken by another class.
        """
        if not scheme or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
            raise RegistryError(f"invalid store scheme {scheme!r}: use letters, digits, '+-.'")
        scheme = scheme.lower()
        existing = self._entries.get(scheme)
        name = target if isinstance(target, str) else _qualified(target)
        if existing is not None and not clobber:
            existing_name = existing if isinstance(existing, str) else _qualified(existing)
            if existing_name != name:
                raise RegistryError(
                    f"store scheme {scheme!r} is already registered to {existing_name}; "
                    f"cannot register {name} (pass clobber=True to replace it)"
                )
        self._entries[scheme] = target

    def unregister(self, scheme: str) -> None:
        """Remove a scheme (a no-op if it is not registered)."""
        self._entries.pop(scheme.lower(), None)

    def get(self, scheme: str, locator: str = "") -> type[StoreConfig]:
        """Return the config class for ``scheme``, importing it if needed.

        Args:
            scheme: The locator scheme.
            locator: The (redacted) locator, quoted in the error if unknown.

        Raises:
            UnknownSchemeError: No store is registered for the scheme.
            RegistryError: The registered plugin cannot be imported.
        """
        scheme = scheme.lower()
        if scheme not in self._entries:
            self._read_entry_points()
        entry = self._entries.get(scheme)
        if entry is None:
            raise UnknownSchemeError(scheme, locator or f"{scheme}://", self._entries)
        if isinstance(entry, str):
            entry = self._load(scheme, entry)
            self._entries[scheme] = entry
        return entry

    def _load(self, scheme: str, path: str) -> type[StoreConfig]:
        module_name, _, attr = path.partition(":")
        try:
            obj: object = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # a plugin can fail in any way; report which one
            raise RegistryError(
                f"store plugin for scheme {scheme!r} ({path}) failed to load: {exc!r}"
            ) from exc
        # StoreConfig has data members, so issubclass() cannot test it structurally;
        # configs subclass it explicitly, which the MRO shows. It is matched by name
        # because abc imports this module (subclassing registers), not the reverse.
        if not (isinstance(obj, type) and any(map(_is_store_config, obj.__mro__))):
            raise RegistryError(
                f"store plugin for scheme {scheme!r} ({path}) is not a StoreConfig subclass"
            )
        return cast("type[StoreConfig]", obj)

    def _read_entry_points(self) -> None:
        if self._entry_points_read or self._group is None:
            return
        self._entry_points_read = True
        for ep in metadata.entry_points(group=self._group):
            self._entries.setdefault(ep.name.lower(), ep.value)

    def copy(self) -> ConfigRegistry:
        """Return an independent registry with the same entries (for tests)."""
        clone = ConfigRegistry(builtins={}, entry_point_group=self._group)
        clone._entries = dict(self._entries)
        clone._entry_points_read = self._entry_points_read
        return clone


registry: ConfigRegistry = ConfigRegistry()
"""The process-wide registry used by locators, ``create_store`` and ``from_dict``."""
