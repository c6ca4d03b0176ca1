"""Seeds: one reproducible source of randomness per replicate of every run.

``seeds(base=123, replicates=3)`` is a :class:`SeedPlan`; each of its replicates is a
:class:`SeedBundle` that an operation receives as ``seeds``. A bundle never exposes
global state: ``seeds.rng()`` and ``seeds.numpy()`` return fresh generators seeded
from sha256 of the bundle's identity, so the numbers are the same on every machine
and in every process (``hash()`` randomisation and platform word size play no part),
and ``seeds.derive("init")`` gives an independent, equally reproducible sub-bundle.
"""

from __future__ import annotations

import hashlib
import random as _random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metalab._identity import canonical_bytes, fingerprint
from metalab._optional import require
from metalab.errors import ConfigError
from metalab.records import JSONValue

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PreprocessingSeeds", "SeedBundle", "SeedPlan", "seeds"]


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an int, got {value!r}")
    return value


@dataclass(frozen=True)
class SeedBundle:
    """The seeds of one run: a base seed, a replicate index and a derivation path.

    Attributes:
        base: The base seed of the plan the bundle comes from.
        replicate: Which replicate of the plan this is (from 0).
        path: The names passed to :meth:`derive`, outermost first.
    """

    base: int
    replicate: int = 0
    path: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_int(self.base, "seed base")
        _check_int(self.replicate, "replicate index")

    @property
    def seed(self) -> int:
        """A 64-bit integer seed derived from the bundle (stable everywhere)."""
        digest = hashlib.sha256(b"metalab-seed\0" + canonical_bytes(self._identity())).digest()
        return int.from_bytes(digest[:8], "big")

    @property
    def fingerprint(self) -> str:
        """Hex sha256 fingerprint of the bundle, part of the run id."""
        return fingerprint(self._identity())

    def _identity(self) -> dict[str, JSONValue]:
        identity: dict[str, JSONValue] = {"base": self.base, "replicate": self.replicate}
        if self.path:
            identity["path"] = list(self.path)
        return identity

    def derive(self, name: str) -> SeedBundle:
        """Return an independent bundle for one purpose (``"init"``, ``"sampling"``).

        The same name always gives the same bundle, and different names give
        unrelated streams, so adding a new random step does not shift the numbers
        of the existing ones.

        Raises:
            ConfigError: ``name`` is not a non-empty string.
        """
        value: object = name
        if not isinstance(value, str) or not value:
            raise ConfigError(f"a derived seed needs a non-empty string name, got {name!r}")
        return SeedBundle(self.base, self.replicate, (*self.path, name))

    def rng(self, name: str | None = None) -> _random.Random:
        """Return a new ``random.Random`` seeded from this bundle.

        Args:
            name: If given, seed from ``derive(name)`` instead (a named stream).
        """
        bundle = self if name is None else self.derive(name)
        return _random.Random(bundle.seed)

    def numpy(self, name: str | None = None) -> np.random.Generator:
        """Return a new NumPy ``Generator`` (PCG64) seeded from this bundle.

        Args:
            name: If given, seed from ``derive(name)`` instead (a named stream).

        Raises:
            MissingDependencyError: NumPy is not installed.
        """
        require("numpy", extra="numpy", feature="SeedBundle.numpy()")
        import numpy as np  # noqa: PLC0415 -- optional (numpy extra), required above

        bundle = self if name is None else self.derive(name)
        return np.random.default_rng(bundle.seed)

    def numpy_seed(self, name: str | None = None) -> int:
        """A 32-bit seed for NumPy APIs that take an int (of ``derive(name)`` if named)."""
        bundle = self if name is None else self.derive(name)
        return bundle.seed % _NUMPY_SEEDS

    @property
    def replicate_index(self) -> int:
        """:attr:`replicate` by its metalab 0.1 name."""
        return self.replicate

    def to_dict(self) -> dict[str, JSONValue]:
        """Return the bundle as JSON builtins (``base``, ``replicate``, ``path``)."""
        return {"base": self.base, "replicate": self.replicate, "path": list(self.path)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SeedBundle:
        """Rebuild a bundle from :meth:`to_dict`, or from metalab 0.1's form.

        0.1 wrote ``{"root_seed": ..., "replicate_index": ...}`` (``None`` for 0).

        Raises:
            ConfigError: ``data`` is neither form.
        """
        if "base" in data:
            path = data.get("path", [])
            if not isinstance(path, list | tuple) or not all(isinstance(p, str) for p in path):
                raise ConfigError(f"a seed bundle's path must be a list of names, got {path!r}")
            return cls(
                _check_int(data["base"], "seed base"),
                _check_int(data.get("replicate", 0), "replicate index"),
                tuple(path),
            )
        if "root_seed" in data:
            replicate = data.get("replicate_index")
            return cls(
                _check_int(data["root_seed"], "root_seed"),
                0 if replicate is None else _check_int(replicate, "replicate_index"),
            )
        raise ConfigError(
            f"not a seed bundle: {dict(data)!r}; expected base/replicate/path "
            "(or metalab 0.1's root_seed/replicate_index)"
        )

    @staticmethod
    def for_preprocessing(base: int) -> PreprocessingSeeds:
        """Seeds for preprocessing before a sweep, with metalab 0.1's numbers.

        Data prepared with a base seed under 0.1 (a train/test split, a subsample)
        comes out the same here, so a cache built by 0.1 stays valid. Use the
        experiment's base seed and put it in the prepared file's name.
        """
        return PreprocessingSeeds.from_base(_check_int(base, "base seed"))


@dataclass(frozen=True)
class PreprocessingSeeds:
    """Seeds for code that runs before a sweep (see :meth:`SeedBundle.for_preprocessing`).

    The derivation is metalab 0.1's: ``derive(name)`` is the first 8 bytes of
    sha256 of ``"{root_seed}:{name}:0"``, and NumPy gets it modulo 2**32.

    Attributes:
        root_seed: The preprocessing root, derived from the experiment's base seed.
    """

    root_seed: int

    @classmethod
    def from_base(cls, base: int) -> PreprocessingSeeds:
        """The preprocessing seeds of an experiment's base seed."""
        return cls(_sha64(f"{base}:preprocessing:0"))

    def derive(self, name: str) -> int:
        """A 64-bit seed for one purpose (the same name, the same seed)."""
        return _sha64(f"{self.root_seed}:{name}:0")

    def numpy_seed(self, name: str = "default") -> int:
        """A 32-bit seed for NumPy APIs that take an int."""
        return self.derive(name) % _NUMPY_SEEDS

    def rng(self, name: str = "default") -> _random.Random:
        """A ``random.Random`` for one purpose."""
        return _random.Random(self.derive(name))

    def numpy(self, name: str = "default") -> np.random.Generator:
        """A NumPy ``Generator`` for one purpose.

        Raises:
            MissingDependencyError: NumPy is not installed.
        """
        require("numpy", extra="numpy", feature="PreprocessingSeeds.numpy()")
        import numpy as np  # noqa: PLC0415 -- optional (numpy extra), required above

        return np.random.default_rng(self.numpy_seed(name))


_NUMPY_SEEDS = 2**32


def _sha64(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


@dataclass(frozen=True)
class SeedPlan:
    """A base seed and a number of replicates: one :class:`SeedBundle` per replicate.

    Every parameter combination of an experiment runs once per replicate, with the
    same bundles, so replicate ``i`` of two runs uses the same seed.

    Attributes:
        base: The base seed.
        replicates: How many replicates each parameter combination gets.
    """

    base: int
    replicates: int = 1

    def __post_init__(self) -> None:
        _check_int(self.base, "seeds(base=...)")
        if _check_int(self.replicates, "seeds(replicates=...)") < 1:
            raise ConfigError(f"seeds(replicates=...) must be at least 1, got {self.replicates}")

    def __iter__(self) -> Iterator[SeedBundle]:
        return (SeedBundle(self.base, i) for i in range(self.replicates))

    def __len__(self) -> int:
        return self.replicates

    def __getitem__(self, index: int) -> SeedBundle:
        if not -self.replicates <= index < self.replicates:
            raise IndexError(f"replicate {index} out of range for {self.replicates} replicates")
        return SeedBundle(self.base, index % self.replicates)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the plan for the experiment manifest."""
        return {"type": "SeedPlan", "base": self.base, "replicates": self.replicates}


def seeds(base: int, replicates: int = 1) -> SeedPlan:
    """Return a plan that runs every parameter combination ``replicates`` times.

    Args:
        base: The base seed; change it to get a new, equally reproducible sample.
        replicates: How many seeds (and runs) per parameter combination.

    Raises:
        ConfigError: ``base`` is not an int, or ``replicates`` is not a positive int.

    >>> [b.replicate for b in seeds(base=7, replicates=3)]
    [0, 1, 2]
    """
    return SeedPlan(base, replicates)
