"""Defining experiments: the operation, its parameters, seeds and context.

An :class:`Experiment` names *what* runs (``name`` and ``version``, so its id is
``"name:version"``), the :func:`operation` that does the work, the shared ``context``,
the parameter source and the seed plan. ``metalab.run`` turns it into runs.

An operation declares only the arguments it uses, by name, among ``context``,
``params``, ``seeds``, ``capture`` and ``runtime``::

    @metalab.operation
    def train(params, seeds, capture):
        capture.metric("score", seeds.rng().random() * params["scale"])
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import shutil
import sys
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, overload

from metalab.errors import ConfigError
from metalab.params import ParamSource, ResolvedSource
from metalab.records import JSONValue, OperationRef
from metalab.seeds import SeedPlan

if TYPE_CHECKING:
    from metalab.capture import Capture
    from metalab.params import ParamResolver
    from metalab.seeds import SeedBundle

__all__ = ["INJECTABLE", "Experiment", "Operation", "Runtime", "operation"]

INJECTABLE: Final = ("context", "params", "seeds", "capture", "runtime")
"""The argument names an operation may declare; each is passed only if declared."""


class Runtime:
    """Per-run plumbing that does not affect results (and so not the run id).

    Attributes:
        run_id: The id of the run.
        experiment_id: The experiment it belongs to.
        executor_id: Which executor runs it (``"thread"``, ``"process"``, ...).
    """

    def __init__(
        self,
        run_id: str,
        experiment_id: str,
        executor_id: str,
        cancel_requested: Callable[[], bool] | None = None,
    ) -> None:
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.executor_id = executor_id
        self._cancel_requested = cancel_requested
        self._scratch: Path | None = None

    @property
    def cancel_requested(self) -> bool:
        """Whether ``RunHandle.cancel()`` was called (seen by thread executors).

        A long operation may poll this and return early; the run is still recorded
        by what the operation does (returning is success, raising is failure).
        """
        return self._cancel_requested is not None and self._cancel_requested()

    @property
    def scratch_dir(self) -> Path:
        """A private temporary directory, created on first use, removed after the run."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix=f"metalab-{self.run_id[:12]}-"))
        return self._scratch

    def cleanup(self) -> None:
        """Remove the scratch directory, if one was created."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def _import_operation(module: str, qualname: str) -> Operation:
    target: object = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not isinstance(target, Operation):
        raise ConfigError(f"{module}:{qualname} is a {type(target).__name__}, not an operation")
    return target


def _rebuild_operation(func: Callable[..., object], name: str) -> Operation:
    return Operation(func, name=name)


class Operation:
    """A function that metalab runs, with the arguments it declares injected.

    Calling the operation calls the function unchanged; :meth:`invoke` is what the
    runner uses. Operations pickle by reference (``module:qualname``), so process
    executors can send them to workers.

    Args:
        func: The function. Its parameters must be among :data:`INJECTABLE` (or
            have defaults); ``**kwargs`` receives all of them.
        name: The operation's name; defaults to the function's name.

    Raises:
        ConfigError: The function declares a parameter metalab cannot provide.
    """

    def __init__(self, func: Callable[..., object], *, name: str | None = None) -> None:
        if not callable(func):
            raise ConfigError(f"an operation must be a function, got {func!r}")
        self.func = func
        self.name: str = name or str(getattr(func, "__name__", type(func).__name__))
        self.wants = self._injected_names(func, self.name)
        self._code_hash: str | None = None

    @staticmethod
    def _injected_names(func: Callable[..., object], name: str) -> tuple[str, ...]:
        try:
            signature = inspect.signature(func)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cannot read the signature of operation {name!r}: {exc}") from exc
        wants: list[str] = []
        for param in signature.parameters.values():
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                return INJECTABLE
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if param.name in INJECTABLE and param.kind is not inspect.Parameter.POSITIONAL_ONLY:
                wants.append(param.name)
            elif param.default is inspect.Parameter.empty:
                raise ConfigError(
                    f"operation {name!r} declares parameter {param.name!r}, which metalab "
                    f"cannot provide; declare any of {', '.join(INJECTABLE)} (by keyword) "
                    "or give it a default"
                )
        return tuple(wants)

    def __call__(self, *args: Any, **kwargs: Any) -> object:
        """Call the function directly, as if it were not decorated."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<operation {self.name!r} ({self.ref})>"

    def invoke(
        self,
        *,
        context: object,
        params: Mapping[str, Any],
        seeds: SeedBundle,
        capture: Capture,
        runtime: Runtime,
    ) -> object:
        """Call the function with the arguments it declares."""
        available = {
            "context": context,
            "params": params,
            "seeds": seeds,
            "capture": capture,
            "runtime": runtime,
        }
        return self.func(**{name: available[name] for name in self.wants})

    @property
    def ref(self) -> str:
        """``module:qualname`` of the function."""
        module = getattr(self.func, "__module__", None) or "__main__"
        qualname = getattr(self.func, "__qualname__", self.name)
        return f"{module}:{qualname}"

    @property
    def code_hash(self) -> str:
        """Hex sha256 of the function's source, or ``""`` when it is not available."""
        if self._code_hash is None:
            try:
                source = inspect.getsource(self.func)
            except (OSError, TypeError):
                source = ""
            self._code_hash = hashlib.sha256(source.encode()).hexdigest() if source else ""
        return self._code_hash

    def to_ref(self) -> OperationRef:
        """Describe the operation for the experiment manifest."""
        return OperationRef(name=self.name, ref=self.ref, code_hash=self.code_hash)

    def __reduce__(self) -> tuple[Callable[..., Operation], tuple[Any, ...]]:
        module_name, _, qualname = self.ref.partition(":")
        target: object = sys.modules.get(module_name)
        for part in qualname.split("."):
            target = getattr(target, part, None)
        if target is self:
            return _import_operation, (module_name, qualname)
        return _rebuild_operation, (self.func, self.name)


@overload
def operation(func: Callable[..., object], /) -> Operation: ...


@overload
def operation(*, name: str | None = None) -> Callable[[Callable[..., object]], Operation]: ...


def operation(
    func: Callable[..., object] | None = None, /, *, name: str | None = None
) -> Operation | Callable[[Callable[..., object]], Operation]:
    """Mark a function as a metalab operation (``@operation`` or ``@operation(name=...)``).

    The function may declare any of ``context``, ``params``, ``seeds``, ``capture``
    and ``runtime``; it receives only those. Its return value is ignored: record
    results through ``capture``.

    Raises:
        ConfigError: The function declares a parameter metalab cannot provide.
    """
    if func is not None:
        return Operation(func, name=name)

    def decorate(fn: Callable[..., object]) -> Operation:
        return Operation(fn, name=name)

    return decorate


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{what} must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True, eq=False)
class Experiment:
    """Everything needed to run (and re-run) an experiment.

    Attributes:
        name: The experiment's name (no ``:``).
        version: Its version; change it when the operation changes meaning.
        operation: What each run executes (an :func:`operation`, or a plain function).
        params: The parameter combinations (:func:`~metalab.grid`, ...).
        seeds: The seed plan (:func:`~metalab.seeds`); default one replicate, base 0.
        context: Data shared by every run; part of the run id, so it must be
            JSON-like (dicts, lists, numbers, strings, dataclasses of those).
        description: Free text for people.
        tags: Labels stored with every run.
        metadata: Free-form JSON kept in the experiment manifest (not in run ids).
        param_resolver: Turns each raw parameter combination into the one that runs
            (``resolver(context_meta, params)``, see ``metalab.params.ParamResolver``);
            it gets the context's fields as ``context_meta``.

    Raises:
        ConfigError: A field has the wrong type or value.
    """

    name: str
    version: str
    operation: Operation
    params: ParamSource
    seeds: SeedPlan = field(default_factory=lambda: SeedPlan(0, 1))
    context: Any = field(default_factory=dict)
    description: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, JSONValue] = field(default_factory=dict)
    param_resolver: ParamResolver | None = None

    def __post_init__(self) -> None:
        # One spelling per name: "café" typed as NFC or NFD is one experiment, whose
        # id (and so its directory and run ids) is the NFC form stores accept.
        for attr in ("name", "version"):
            text = _check_text(getattr(self, attr), f"Experiment({attr}=...)")
            object.__setattr__(self, attr, unicodedata.normalize("NFC", text))
        if ":" in self.name:
            raise ConfigError(
                f"Experiment(name={self.name!r}) must not contain ':', which separates "
                "name and version in the experiment id"
            )
        op: object = self.operation
        if not isinstance(op, Operation):
            if not callable(op):
                raise ConfigError(f"Experiment(operation=...) must be a function, got {op!r}")
            object.__setattr__(self, "operation", Operation(op))
        if not isinstance(self.params, ParamSource):
            raise ConfigError(
                "Experiment(params=...) must be a parameter source such as "
                f"metalab.grid(...), metalab.manual([...]) or metalab.random(...), "
                f"got {self.params!r}"
            )
        seed_plan: object = self.seeds
        if not isinstance(seed_plan, SeedPlan):
            raise ConfigError(
                f"Experiment(seeds=...) must come from metalab.seeds(...), got {seed_plan!r}"
            )
        tags: object = self.tags
        if isinstance(tags, str) or not isinstance(tags, Iterable):
            raise ConfigError(f"Experiment(tags=...) must be a list of strings, got {tags!r}")
        object.__setattr__(self, "tags", tuple(_check_text(t, "a tag") for t in tags))
        object.__setattr__(self, "metadata", dict(self.metadata))
        resolved = isinstance(self.params, ResolvedSource) and (
            self.params.resolver is self.param_resolver
        )
        if self.param_resolver is not None and not resolved:  # replace() keeps one layer
            object.__setattr__(
                self,
                "params",
                ResolvedSource(self.params, self.param_resolver, _context_meta(self.context)),
            )

    @property
    def experiment_id(self) -> str:
        """``"name:version"``: the key of the experiment in every store."""
        return f"{self.name}:{self.version}"

    @property
    def total_runs(self) -> int:
        """How many runs the experiment defines (combinations x replicates)."""
        return len(self.params) * len(self.seeds)

    def replace(self, **changes: Any) -> Experiment:
        """Return a copy with some fields changed (``exp.replace(version="2")``)."""
        return dataclasses.replace(self, **changes)


def _context_meta(context: object) -> dict[str, Any]:
    """The context as a resolver sees it: its items, or a spec's fields (paths unhashed)."""
    if isinstance(context, Mapping):
        return dict(context)
    if dataclasses.is_dataclass(context) and not isinstance(context, type):
        return {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
    return {}
