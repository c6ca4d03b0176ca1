"""The documents written by the original metalab 0.1 decode and upgrade."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from pathlib import Path

import pytest

from metalab import _codec

GOLDEN_0_1 = Path(__file__).parent / "data" / "metalab-0.1-collection"
EXP = GOLDEN_0_1 / "golden_0.1"
RUN_OK = "101136d379f26e81"
RUN_FAILED = "7039053db7c554ca"


def _read(rel: str) -> bytes:
    return (EXP / rel).read_bytes()


class TestRunRecords:
    def test_all_six_runs_decode(self) -> None:
        records = [
            _codec.RUN_RECORD.decode(p.read_bytes()) for p in sorted(EXP.glob("runs/*.json"))
        ]
        assert len(records) == 6
        assert sorted(r.status for r in records) == ["failed"] * 2 + ["success"] * 4
        assert {r.experiment_id for r in records} == {"golden:0.1"}

    def test_params_resolved_becomes_params(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_OK}.json"))
        assert rec.params == {"lr": 0.2, "opt": "adam"}
        assert rec.run_id == RUN_OK
        assert len(rec.run_id) == 16

    def test_bare_nan_token_and_every_metric_type(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_OK}.json"))
        loss = rec.metrics["loss"]
        assert isinstance(loss, float)
        assert math.isnan(loss)
        assert rec.metrics["converged"] is False
        assert rec.metrics["optimizer"] == "adam"
        assert rec.metrics["score"] == pytest.approx(0.10785878030022851)

    def test_naive_local_timestamps_are_read_as_local_time(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_OK}.json"))
        local = dt.datetime(2026, 11, 27, 12, 40, 15, 220389).astimezone()
        assert rec.started_at.tzinfo is dt.UTC
        assert rec.started_at == local

    def test_absolute_artifact_uris_become_store_relative(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_OK}.json"))
        (art,) = rec.artifacts
        assert art.uri == f"artifacts/{RUN_OK}/config.json"
        data = (EXP / art.uri).read_bytes()
        assert len(data) == art.size_bytes
        assert hashlib.sha256(data).hexdigest().startswith(art.content_hash)

    def test_failed_run_keeps_its_error(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_FAILED}.json"))
        assert rec.error is not None
        assert rec.error.type == "ValueError"
        assert rec.error.message == "diverged: lr too high"
        assert "Traceback" in rec.error.traceback

    def test_upgraded_record_re_encodes_as_current_standard_json(self) -> None:
        rec = _codec.RUN_RECORD.decode(_read(f"runs/{RUN_OK}.json"))
        data = _codec.RUN_RECORD.encode(rec)
        assert data.startswith(b'{"schema_version":1,')
        assert b"NaN" not in data.replace(b'"NaN"', b"")


class TestOtherDocuments:
    def test_store_meta(self) -> None:
        meta = _codec.STORE_META.decode(_read("_meta.json"))
        assert meta.experiment_id == "golden:0.1"
        assert meta.created_by == "metalab"

    def test_derived_metrics(self) -> None:
        derived = _codec.DERIVED.decode(_read(f"derived/{RUN_OK}.json"))
        assert derived.metrics == {"double_score": pytest.approx(0.21571756060045702)}

    def test_structured_result(self) -> None:
        result = _codec.RESULT.decode(_read(f"results/{RUN_OK}/curve.json"))
        assert result.data == [1.0, 0.5, 0.25]

    def test_artifact_manifest(self) -> None:
        manifest = _codec.ARTIFACT_MANIFEST.decode(_read(f"artifacts/{RUN_OK}/_manifest.json"))
        assert [a.uri for a in manifest.artifacts] == [f"artifacts/{RUN_OK}/config.json"]

    def test_experiment_manifest(self) -> None:
        (path,) = EXP.glob("experiments/*.json")
        manifest = _codec.EXPERIMENT_MANIFEST.decode(path.read_bytes())
        assert manifest.experiment_id == "golden:0.1"
        assert manifest.total_runs == 6
        assert len(manifest.run_ids) == 6
        assert manifest.operation is not None
        assert manifest.operation.name == "train"
        assert manifest.submitted_at.tzinfo is dt.UTC


def test_golden_files_are_kept_verbatim() -> None:
    """The golden copy must stay byte-identical to what metalab 0.1 wrote."""
    digest = hashlib.sha256()
    for path in sorted(p for p in EXP.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(EXP)).encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == (GOLDEN_0_1 / "SHA256").read_text().split()[0]
