"""Codec: encode and decode the workload's records, vs the stdlib way metalab 0.1 did it.

The baseline mirrors the original metalab: dataclasses turned into a hand-built dict
and dumped with ``json.dumps(indent=2, sort_keys=True)``; decoding is ``json.loads``
followed by constructing the dataclasses with ``datetime.fromisoformat``. Both sides
hold all ``n`` records in memory at once, as a bulk scan does.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from benchmarks import _workload
from benchmarks._harness import Measurement, Report, time_interleaved
from metalab import _codec
from metalab.records import RunRecord

BASELINE = "stdlib json + dataclasses"


@dataclass
class _Provenance:
    code_hash: str = ""
    python_version: str | None = None
    metalab_version: str | None = None
    executor_id: str | None = None
    host: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Artifact:
    artifact_id: str | None
    name: str
    kind: str
    format: str
    uri: str
    content_hash: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Record:
    run_id: str
    experiment_id: str
    status: str
    context_fingerprint: str
    params_fingerprint: str
    seed_fingerprint: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    params_resolved: dict[str, Any]
    metrics: dict[str, Any]
    provenance: _Provenance
    artifacts: list[_Artifact]
    tags: list[str]
    error: dict[str, Any] | None = None
    warnings: list[Any] = field(default_factory=list)
    notes: str | None = None


def _to_baseline(rec: RunRecord) -> _Record:
    p = rec.provenance
    return _Record(
        run_id=rec.run_id,
        experiment_id=rec.experiment_id,
        status=rec.status,
        context_fingerprint=rec.context_fingerprint,
        params_fingerprint=rec.params_fingerprint,
        seed_fingerprint=rec.seed_fingerprint,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        duration_ms=rec.duration_ms,
        params_resolved=dict(rec.params),
        metrics=dict(rec.metrics),
        provenance=_Provenance(
            p.code_hash, p.python_version, p.metalab_version, p.executor_id, p.host, dict(p.extra)
        ),
        artifacts=[
            _Artifact(a.artifact_id, a.name, a.kind, a.format, a.uri, a.content_hash, a.size_bytes)
            for a in rec.artifacts
        ],
        tags=list(rec.tags),
    )


def _baseline_dump(r: _Record) -> bytes:
    doc = {
        "_schema_version": "0.1",
        "run_id": r.run_id,
        "experiment_id": r.experiment_id,
        "status": r.status,
        "context_fingerprint": r.context_fingerprint,
        "params_fingerprint": r.params_fingerprint,
        "seed_fingerprint": r.seed_fingerprint,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "duration_ms": r.duration_ms,
        "params_resolved": r.params_resolved,
        "metrics": r.metrics,
        "provenance": {
            "code_hash": r.provenance.code_hash,
            "python_version": r.provenance.python_version,
            "metalab_version": r.provenance.metalab_version,
            "executor_id": r.provenance.executor_id,
            "host": r.provenance.host,
            "extra": r.provenance.extra,
        },
        "artifacts": [
            {
                "artifact_id": a.artifact_id,
                "name": a.name,
                "kind": a.kind,
                "format": a.format,
                "uri": a.uri,
                "content_hash": a.content_hash,
                "size_bytes": a.size_bytes,
                "metadata": a.metadata,
            }
            for a in r.artifacts
        ],
        "tags": r.tags,
        "error": r.error,
        "warnings": r.warnings,
        "notes": r.notes,
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _baseline_load(data: bytes) -> _Record:
    d = json.loads(data)
    p = d["provenance"]
    return _Record(
        run_id=d["run_id"],
        experiment_id=d["experiment_id"],
        status=d["status"],
        context_fingerprint=d["context_fingerprint"],
        params_fingerprint=d["params_fingerprint"],
        seed_fingerprint=d["seed_fingerprint"],
        started_at=dt.datetime.fromisoformat(d["started_at"]),
        finished_at=dt.datetime.fromisoformat(d["finished_at"]) if d["finished_at"] else None,
        duration_ms=d["duration_ms"],
        params_resolved=d["params_resolved"],
        metrics=d["metrics"],
        provenance=_Provenance(**p),
        artifacts=[_Artifact(**a) for a in d["artifacts"]],
        tags=d["tags"],
        error=d["error"],
        warnings=d["warnings"],
        notes=d["notes"],
    )


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure encode and decode of ``n`` records for metalab and the baseline."""
    records = list(_workload.records(n))
    baseline_records = [_to_baseline(r) for r in records]
    encoded = [_codec.RUN_RECORD.encode(r) for r in records]
    baseline_encoded = [_baseline_dump(r) for r in baseline_records]
    encode = _codec.RUN_RECORD.encode
    decode = _codec.RUN_RECORD.decode
    size_note = (
        f"{sum(map(len, encoded)) / n:.0f} bytes/record "
        f"(baseline {sum(map(len, baseline_encoded)) / n:.0f})"
    )

    timings = time_interleaved(
        {
            BASELINE: lambda: [_baseline_dump(r) for r in baseline_records],
            "metalab": lambda: [encode(r) for r in records],
        },
        repeat=repeat,
    )
    report.add(Measurement("codec.encode", BASELINE, n, timings[BASELINE]))
    report.add(Measurement("codec.encode", "metalab", n, timings["metalab"], BASELINE, size_note))
    for gc_enabled, suffix in ((True, ""), (False, " (gc off)")):
        timings = time_interleaved(
            {
                BASELINE: lambda: [_baseline_load(b) for b in baseline_encoded],
                "metalab": lambda: [decode(b) for b in encoded],
            },
            repeat=repeat,
            gc_enabled=gc_enabled,
        )
        operation = "codec.decode" + suffix
        report.add(Measurement(operation, BASELINE, n, timings[BASELINE]))
        report.add(Measurement(operation, "metalab", n, timings["metalab"], BASELINE))
