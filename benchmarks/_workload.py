"""Deterministic records of the shared benchmark workload (``shared/bench/WORKLOAD.md``).

Record ``i`` is the same on every machine and in every run: its run id is the sha256 of
``str(i)`` and its values come from ``random.Random(i)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterator

from metalab.records import (
    ArtifactDescriptor,
    DerivedMetrics,
    JSONValue,
    MetricValue,
    Provenance,
    RunRecord,
)

EXPERIMENT_ID = "bench:1.0"
_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
_PROVENANCE = Provenance(
    code_hash="c0ffee" * 6,
    python_version="3.11.7",
    metalab_version="0.2.0",
    executor_id="process",
    host="bench-host",
    extra={},
)


def run_id(i: int) -> str:
    """The 64-hex run id of record ``i``."""
    return hashlib.sha256(str(i).encode()).hexdigest()


def params(i: int) -> dict[str, JSONValue]:
    """Ten params: four floats, three ints, two strings and one bool."""
    rng = random.Random(i)
    return {
        "lr": 10 ** rng.uniform(-5, -1),
        "momentum": rng.uniform(0.5, 0.99),
        "dropout": rng.uniform(0.0, 0.5),
        "weight_decay": 10 ** rng.uniform(-6, -2),
        "batch_size": rng.choice([16, 32, 64, 128, 256]),
        "epochs": rng.randint(1, 100),
        "hidden": rng.choice([64, 128, 256, 512]),
        "optimizer": rng.choice(["sgd", "adam", "adamw", "rmsprop"]),
        "activation": rng.choice(["relu", "gelu", "tanh"]),
        "augment": rng.random() < 0.5,
    }


def record(i: int) -> RunRecord:
    """The representative run record number ``i``."""
    rng = random.Random(-i - 1)
    rid = run_id(i)
    started = _EPOCH + dt.timedelta(seconds=i)
    duration = rng.uniform(100, 10_000)
    metrics: dict[str, MetricValue] = {f"m{k:02d}": rng.random() for k in range(20)}
    artifacts = tuple(
        ArtifactDescriptor(
            name=name,
            kind=kind,
            format=fmt,
            uri=f"artifacts/{rid}/{name}.{fmt}",
            content_hash=hashlib.sha256(f"{i}:{name}".encode()).hexdigest(),
            size_bytes=rng.randint(100, 1_000_000),
        )
        for name, kind, fmt in (("model", "bytes", "bin"), ("config", "json", "json"))
    )
    return RunRecord(
        run_id=rid,
        experiment_id=EXPERIMENT_ID,
        status="success",
        started_at=started,
        finished_at=started + dt.timedelta(milliseconds=duration),
        duration_ms=duration,
        params=params(i),
        metrics=metrics,
        tags=("bench", "sweep"),
        artifacts=artifacts,
        provenance=_PROVENANCE,
        context_fingerprint=hashlib.sha256(b"context").hexdigest(),
        params_fingerprint=hashlib.sha256(f"p{i}".encode()).hexdigest(),
        seed_fingerprint=hashlib.sha256(f"s{i}".encode()).hexdigest(),
    )


def derived(i: int) -> DerivedMetrics:
    """Three derived float metrics for record ``i``."""
    rng = random.Random(10**9 + i)
    return DerivedMetrics(metrics={f"d{k}": rng.random() for k in range(3)})


def records(n: int) -> Iterator[RunRecord]:
    """Records ``0 .. n-1``."""
    return (record(i) for i in range(n))
