"""From a locator, config or store to a connected store: the one coercion path."""

from __future__ import annotations

import os
from typing import Any

from metalab.errors import ConfigError
from metalab.store import registry as _registry
from metalab.store.abc import Store, StoreConfig, StoreLike
from metalab.store.locator import parse_locator

__all__ = ["coerce_store_config", "create_store", "parse_to_config"]


def parse_to_config(locator: str | os.PathLike[str], **kwargs: Any) -> StoreConfig:
    """Parse a locator into the config of the store it names.

    Args:
        locator: A path, ``file://`` URI or ``scheme://...`` URI.
        **kwargs: Config fields that the locator does not carry (``file_root``,
            ``experiment_id``, ...); they override values from the locator.

    Raises:
        LocatorError: The locator is malformed or lacks a required part.
        UnknownSchemeError: No store is registered for its scheme.
        ConfigError: A keyword argument is not a field of that config.
    """
    info = parse_locator(locator)
    cls = _registry.registry.get(info.scheme, info.redacted())
    return cls.from_locator(info, **kwargs)


def coerce_store_config(
    store: StoreLike, *, experiment_id: str | None = None, **kwargs: Any
) -> StoreConfig:
    """Turn whatever the user passed as a store into a config, scoped if asked.

    Raises:
        TypeError: ``store`` is neither a locator nor a ``StoreConfig``.
        ConfigError: ``kwargs`` were given with a ready config, or scoping conflicts.
    """
    if isinstance(store, StoreConfig):
        if kwargs:
            raise ConfigError(
                f"keyword arguments {sorted(kwargs)} only apply to locators; "
                "set them on the config instead (dataclasses.replace)"
            )
        config = store
    elif isinstance(store, str | os.PathLike):
        config = parse_to_config(store, **kwargs)
    else:
        raise TypeError(
            "store must be a path, a locator string or a StoreConfig, "
            f"got {type(store).__qualname__}"
        )
    return config.scoped(experiment_id) if experiment_id is not None else config


def create_store(locator: StoreLike, **kwargs: Any) -> Store:
    """Connect to the store a locator (or config) names.

    >>> store = create_store("memory://")
    """
    return coerce_store_config(locator, **kwargs).connect()
