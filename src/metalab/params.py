"""Parameter sources: which parameter combinations an experiment runs.

A source is anything that satisfies :class:`ParamSource`: it iterates over parameter
dicts, knows how many it yields and describes itself for the experiment manifest.
metalab ships three:

- :func:`grid` -- the Cartesian product of named axes, last axis varying fastest;
- :func:`manual` -- an explicit list of dicts;
- :func:`random` -- ``n_trials`` samples from a space of distributions
  (:func:`uniform`, :func:`loguniform`, :func:`randint`, :func:`choice`).

Sources are deterministic: trial ``i`` of ``random(space, n_trials, seed)`` is drawn
from its own generator seeded from sha256 of ``(seed, i)``, so it is the same on every
machine whatever else was sampled before it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random as _random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from metalab._identity import canonical_bytes, to_json
from metalab.errors import ConfigError
from metalab.records import JSONValue

__all__ = [
    "Choice",
    "Distribution",
    "GridSource",
    "LogUniform",
    "LogUniformInt",
    "ManualSource",
    "ParamResolver",
    "ParamSource",
    "Params",
    "RandInt",
    "RandomSource",
    "ResolvedSource",
    "Uniform",
    "choice",
    "grid",
    "loguniform",
    "loguniform_int",
    "manual",
    "randint",
    "random",
    "uniform",
    "with_resolver",
]

Params: TypeAlias = dict[str, Any]
"""One parameter combination. Values must have a JSON form (checked when it runs)."""


@runtime_checkable
class ParamSource(Protocol):
    """What ``Experiment(params=...)`` accepts.

    **Invariants**

    - Iterating twice yields the same dicts in the same order, in any process.
    - ``len(source)`` is the number of dicts iteration yields.
    - :meth:`to_manifest` returns JSON builtins that describe the source.
    """

    def __iter__(self) -> Iterator[Params]:
        """Yield each parameter combination once."""
        ...

    def __len__(self) -> int:
        """Return the number of combinations."""
        ...

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the source for the experiment manifest (JSON builtins)."""
        ...


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a non-empty string, got {name!r}")
    return name


class GridSource:
    """Every combination of the values of some named axes.

    Args:
        axes: Parameter name -> the values it takes, in order.

    Raises:
        ConfigError: An axis is a string or not iterable, or has no values.
    """

    def __init__(self, axes: Mapping[str, Iterable[Any]]) -> None:
        self._axes: dict[str, tuple[Any, ...]] = {}
        for name, values in axes.items():
            _check_name(name, "a grid axis name")
            if isinstance(values, str | bytes) or not isinstance(values, Iterable):
                raise ConfigError(
                    f"grid axis {name!r} must be a list of values, got {values!r}; "
                    f"write {name}=[{values!r}] for a single value"
                )
            self._axes[name] = tuple(values)
            if not self._axes[name]:
                raise ConfigError(f"grid axis {name!r} has no values; give at least one")

    def __iter__(self) -> Iterator[Params]:
        names = tuple(self._axes)
        for combo in itertools.product(*self._axes.values()):
            yield dict(zip(names, combo, strict=True))

    def __len__(self) -> int:
        return math.prod(len(v) for v in self._axes.values())

    def __repr__(self) -> str:
        axes = ", ".join(f"{k}={list(v)!r}" for k, v in self._axes.items())
        return f"grid({axes})"

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the grid: its axes and number of combinations."""
        return {
            "type": "GridSource",
            "spec": {k: to_json(list(v), f"grid axis {k!r}") for k, v in self._axes.items()},
            "total_cases": len(self),
        }


class ManualSource:
    """An explicit list of parameter combinations.

    Args:
        cases: The combinations, each a mapping with string keys.

    Raises:
        ConfigError: A case is not a mapping, or has a key that is not a string.
    """

    def __init__(self, cases: Iterable[Mapping[str, Any]]) -> None:
        self._cases: list[Params] = []
        for i, case in enumerate(cases):
            if not isinstance(case, Mapping):
                raise ConfigError(f"manual case {i} must be a dict, got {case!r}")
            for key in case:
                _check_name(key, f"a key of manual case {i}")
            self._cases.append(dict(case))

    def __iter__(self) -> Iterator[Params]:
        return (dict(case) for case in self._cases)

    def __len__(self) -> int:
        return len(self._cases)

    def __repr__(self) -> str:
        return f"manual(<{len(self._cases)} cases>)"

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the list: every case and how many there are."""
        return {
            "type": "ManualSource",
            "cases": to_json(self._cases, "manual cases"),
            "total_cases": len(self._cases),
        }


@runtime_checkable
class Distribution(Protocol):
    """A distribution of one parameter in a :func:`random` space."""

    def sample(self, rng: _random.Random) -> Any:
        """Draw one value using ``rng``."""
        ...

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution (JSON builtins)."""
        ...


def _check_bounds(kind: str, low: float, high: float) -> None:
    for value in (low, high):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{kind} bounds must be numbers, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{kind} bounds must be finite, got {value!r}")
    if low > high:
        raise ConfigError(f"{kind}(low={low!r}, high={high!r}) needs low <= high")


@dataclass(frozen=True)
class Uniform:
    """Floats drawn uniformly from ``[low, high]``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_bounds("uniform", self.low, self.high)

    def sample(self, rng: _random.Random) -> float:
        """Draw one float."""
        return rng.uniform(self.low, self.high)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution."""
        return {"type": "Uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class LogUniform:
    """Floats whose logarithm is uniform on ``[log(low), log(high)]`` (``low > 0``)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _check_bounds("loguniform", self.low, self.high)
        if self.low <= 0:
            raise ConfigError(f"loguniform bounds must be positive, got low={self.low!r}")

    def sample(self, rng: _random.Random) -> float:
        """Draw one float."""
        value = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        # exp(log(x)) can land a hair outside the bounds; keep the promise.
        return min(max(value, self.low), self.high)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution."""
        return {"type": "LogUniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class RandInt:
    """Integers drawn uniformly from ``low`` to ``high``, both included."""

    low: int
    high: int

    def __post_init__(self) -> None:
        for value in (self.low, self.high):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"randint bounds must be ints, got {value!r}")
        _check_bounds("randint", self.low, self.high)

    def sample(self, rng: _random.Random) -> int:
        """Draw one int."""
        return rng.randint(self.low, self.high)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution."""
        return {"type": "RandInt", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class LogUniformInt:
    """Integers whose logarithm is uniform on ``[log(low), log(high)]``, rounded.

    Sample sizes, hidden widths, batch sizes: ranges spanning orders of magnitude
    where each decade deserves as many draws (metalab 0.1's ``loguniform_int``).
    """

    low: int
    high: int

    def __post_init__(self) -> None:
        for value in (self.low, self.high):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"loguniform_int bounds must be ints, got {value!r}")
        _check_bounds("loguniform_int", self.low, self.high)
        if self.low <= 0:
            raise ConfigError(f"loguniform_int bounds must be positive, got low={self.low!r}")

    def sample(self, rng: _random.Random) -> int:
        """Draw one int."""
        value = round(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return min(max(value, self.low), self.high)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution."""
        return {"type": "LogUniformInt", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of options, each equally likely."""

    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.options:
            raise ConfigError("choice() needs at least one option")

    def sample(self, rng: _random.Random) -> Any:
        """Draw one option."""
        return self.options[rng.randrange(len(self.options))]

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the distribution."""
        return {"type": "Choice", "options": to_json(list(self.options), "choice options")}


class RandomSource:
    """``n_trials`` parameter combinations drawn from a space of distributions.

    Args:
        space: Parameter name -> a :class:`Distribution`.
        n_trials: How many combinations to draw.
        seed: The seed of the draws.

    Raises:
        ConfigError: The space holds something that is not a distribution, or
            ``n_trials`` or ``seed`` is not a non-negative int.
    """

    def __init__(self, space: Mapping[str, Distribution], n_trials: int, seed: int) -> None:
        for name, dist in space.items():
            _check_name(name, "a random-space parameter name")
            if not isinstance(dist, Distribution):
                raise ConfigError(
                    f"random space entry {name!r} must be a distribution "
                    f"(uniform, loguniform, randint, choice), got {dist!r}"
                )
        checked: tuple[tuple[str, object], ...] = (("n_trials", n_trials), ("seed", seed))
        for label, value in checked:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"random({label}=...) must be a non-negative int, got {value!r}")
        self._space = dict(space)
        # Draw in sorted name order, so the order of the space dict does not matter.
        self._draw_order = sorted(self._space)
        self._n_trials = n_trials
        self._seed = seed

    def trial(self, index: int) -> Params:
        """Return trial ``index`` (the same whatever was drawn before it)."""
        if not 0 <= index < self._n_trials:
            raise IndexError(f"trial {index} out of range for {self._n_trials} trials")
        digest = hashlib.sha256(b"metalab-trial\0" + canonical_bytes([self._seed, index]))
        rng = _random.Random(int.from_bytes(digest.digest()[:8], "big"))
        drawn = {name: self._space[name].sample(rng) for name in self._draw_order}
        return {name: drawn[name] for name in self._space}

    def __iter__(self) -> Iterator[Params]:
        return (self.trial(i) for i in range(self._n_trials))

    def __len__(self) -> int:
        return self._n_trials

    def __repr__(self) -> str:
        return f"random(<{len(self._space)} params>, n_trials={self._n_trials}, seed={self._seed})"

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the space, the number of trials and the seed."""
        return {
            "type": "RandomSource",
            "space": {name: dist.to_manifest() for name, dist in self._space.items()},
            "n_trials": self._n_trials,
            "seed": self._seed,
        }


ParamResolver: TypeAlias = (
    "Callable[[Mapping[str, Any], Params], Mapping[str, Any]] | _ResolverObject"
)
"""Turns a raw parameter combination into the one that runs: ``resolver(context, params)``
(or an object with that ``resolve`` method), e.g. deriving a parameter from others or
refusing an invalid combination. It must be deterministic: run ids come from what it
returns."""


@runtime_checkable
class _ResolverObject(Protocol):
    def resolve(self, context_meta: Mapping[str, Any], params_raw: Params) -> Mapping[str, Any]:
        """Return the resolved parameters."""
        ...


class ResolvedSource:
    """A parameter source whose combinations pass through a resolver (``with_resolver``).

    Args:
        source: The raw combinations.
        resolver: A ``ParamResolver``.
        context_meta: What the resolver gets as its first argument.
    """

    def __init__(
        self,
        source: ParamSource,
        resolver: ParamResolver,
        context_meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(source, ParamSource):
            raise ConfigError(f"with_resolver() takes a parameter source, got {source!r}")
        if not (callable(resolver) or isinstance(resolver, _ResolverObject)):
            raise ConfigError(
                f"a resolver is a function (context, params) -> params or has .resolve(), "
                f"got {resolver!r}"
            )
        self._source = source
        self._resolver = resolver
        self._context_meta: Mapping[str, Any] = dict(context_meta or {})

    def __repr__(self) -> str:
        return f"ResolvedSource({self._source!r}, {_name(self._resolver)})"

    @property
    def resolver(self) -> ParamResolver:
        """The resolver the combinations pass through."""
        return self._resolver

    def with_context(self, context_meta: Mapping[str, Any]) -> ResolvedSource:
        """The same source, resolving with ``context_meta``."""
        return ResolvedSource(self._source, self._resolver, context_meta)

    def __iter__(self) -> Iterator[Params]:
        resolve = (
            self._resolver.resolve
            if isinstance(self._resolver, _ResolverObject)
            else self._resolver
        )
        for index, raw in enumerate(self._source):
            resolved = resolve(self._context_meta, dict(raw))
            if not isinstance(resolved, Mapping):
                raise ConfigError(
                    f"resolver {_name(self._resolver)} returned {resolved!r} for the "
                    f"parameters at position {index}; it must return a dict"
                )
            yield dict(resolved)

    def __len__(self) -> int:
        return len(self._source)

    def to_manifest(self) -> dict[str, JSONValue]:
        """Describe the source: the raw one and the resolver's name."""
        return {
            "type": "ResolvedSource",
            "source": self._source.to_manifest(),
            "resolver": _name(self._resolver),
        }


def _name(resolver: object) -> str:
    target = getattr(resolver, "resolve", resolver)
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}:{getattr(target, '__qualname__', type(target).__qualname__)}"


def with_resolver(source: ParamSource, resolver: ParamResolver) -> ResolvedSource:
    """Resolve each combination of ``source`` before it runs (see :data:`ParamResolver`)."""
    return ResolvedSource(source, resolver)


def grid(**axes: Iterable[Any]) -> GridSource:
    """Run every combination of the given values.

    >>> list(grid(lr=[0.1, 0.01], layers=[2]))
    [{'lr': 0.1, 'layers': 2}, {'lr': 0.01, 'layers': 2}]

    Raises:
        ConfigError: An axis is a single string or not iterable, or is empty.
    """
    return GridSource(axes)


def manual(cases: Iterable[Mapping[str, Any]]) -> ManualSource:
    """Run exactly the given parameter dicts.

    >>> len(manual([{"lr": 0.1}, {"lr": 0.01, "warmup": True}]))
    2

    Raises:
        ConfigError: A case is not a dict with string keys.
    """
    return ManualSource(cases)


def random(space: Mapping[str, Distribution], n_trials: int, seed: int = 0) -> RandomSource:
    """Run ``n_trials`` combinations drawn reproducibly from ``space``.

    >>> source = random({"lr": loguniform(1e-4, 1e-1), "k": randint(1, 5)}, n_trials=3, seed=1)
    >>> len(source), list(source) == list(source)
    (3, True)

    Raises:
        ConfigError: See :class:`RandomSource`.
    """
    return RandomSource(space, n_trials, seed)


def uniform(low: float, high: float) -> Uniform:
    """A float uniform on ``[low, high]``."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """A float log-uniform on ``[low, high]`` (both positive): good for learning rates."""
    return LogUniform(low, high)


def loguniform_int(low: int, high: int) -> LogUniformInt:
    """An int log-uniform on ``low .. high`` (both positive), rounded to the nearest."""
    return LogUniformInt(low, high)


def randint(low: int, high: int) -> RandInt:
    """An int uniform on ``low .. high``, both included."""
    return RandInt(low, high)


def choice(options: Sequence[Any]) -> Choice:
    """One of ``options``, each equally likely."""
    if isinstance(options, str | bytes):
        raise ConfigError(f"choice() takes a list of options, got the string {options!r}")
    return Choice(tuple(options))
