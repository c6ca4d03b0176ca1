"""export_store between stores: complete, verified, idempotent, resumable, never destructive."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest

from metalab.records import ExperimentManifest, ResultDocument, RunRecord
from metalab.series import SeriesPoint
from metalab.store import MemoryStoreConfig, Store
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store.transfer import export_store
from metalab.testing import assert_same_document

EXP = "exp:1.0"
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _fill(store: FileStore | Store, n: int = 4, *, prefix: str = "") -> list[str]:
    ids = []
    for i in range(n):
        run_id = f"{prefix}{i:02d}" + "a" * 14
        rec = RunRecord.running(run_id=run_id, experiment_id=EXP, params={"i": i}, started_at=T0)
        art = store.put_artifact(
            run_id, "model", f"weights {i}".encode(), kind="bytes", format="bin"
        )
        store.put_run_record(rec.succeeded(metrics={"m": i / 2}, artifacts=(art,)))
        store.put_derived(run_id, {"double": float(i)})
        store.put_log(run_id, "run", f"log of {i}\n")  # type: ignore[union-attr]
        store.put_result(run_id, "curve", ResultDocument(data=[i, float("nan")]))  # type: ignore[union-attr]
        store.append_series(  # type: ignore[union-attr]
            run_id, [SeriesPoint("loss", s, 1 / (s + 1), 1.5 + s) for s in range(3)]
        )
        ids.append(run_id)
    store.put_experiment_manifest(  # type: ignore[union-attr]
        ExperimentManifest(experiment_id=EXP, name="exp", version="1.0", submitted_at=T0)
    )
    return ids


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".lock"):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> FileStoreConfig:
    config = FileStoreConfig(root=str(tmp_path / "src"))
    with config.scoped(EXP).connect() as store:
        _fill(store)
    return config


class TestFileToFile:
    def test_everything_arrives_and_matches(self, source: FileStoreConfig, tmp_path: Path) -> None:
        report = export_store(source, tmp_path / "dst")
        assert report.ok, report.problems
        assert report.experiments == [EXP]
        assert {k: c.copied for k, c in report.counts.items()} == {
            "records": 4,
            "derived": 4,
            "artifacts": 4,
            "logs": 4,
            "results": 4,
            "series": 4,
            "manifests": 1,
        }
        with (
            source.scoped(EXP).connect() as src,
            FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst,
        ):
            for rec in src.list_run_records():
                assert dst.get_run_record(rec.run_id) == rec
                assert dst.get_artifact(rec.run_id, "model") == src.get_artifact(
                    rec.run_id, "model"
                )
                assert dst.get_derived(rec.run_id) == src.get_derived(rec.run_id)
                assert dst.get_log(rec.run_id, "run") == src.get_log(rec.run_id, "run")
                assert_same_document(
                    dst.get_result(rec.run_id, "curve"), src.get_result(rec.run_id, "curve")
                )
                assert dst.get_series(rec.run_id) == src.get_series(rec.run_id)
            assert dst.list_experiment_manifests() == src.list_experiment_manifests()

    def test_a_second_export_copies_nothing(self, source: FileStoreConfig, tmp_path: Path) -> None:
        export_store(source, tmp_path / "dst")
        before = _tree_digest(tmp_path / "dst")
        again = export_store(source, tmp_path / "dst")
        assert again.ok
        assert again.copied == 0
        assert again.counts["records"].skipped == 4
        assert _tree_digest(tmp_path / "dst") == before

    def test_only_new_runs_are_copied_later(self, source: FileStoreConfig, tmp_path: Path) -> None:
        export_store(source, tmp_path / "dst")
        with source.scoped(EXP).connect() as src:
            rec = RunRecord.running(run_id="ff" * 8, experiment_id=EXP, started_at=T0)
            src.put_run_record(rec.succeeded())
        report = export_store(source, tmp_path / "dst")
        assert report.counts["records"].copied == 1
        assert report.counts["records"].skipped == 4

    def test_source_is_never_modified(self, source: FileStoreConfig, tmp_path: Path) -> None:
        before = _tree_digest(Path(source.root))
        export_store(source, tmp_path / "dst")
        assert _tree_digest(Path(source.root)) == before

    def test_without_artifacts(self, source: FileStoreConfig, tmp_path: Path) -> None:
        report = export_store(source, tmp_path / "dst", artifacts=False)
        assert report.counts["artifacts"].copied == 0
        with FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst:
            assert dst.list_artifacts(dst.list_run_records()[0].run_id) == []

    def test_interrupted_export_resumes(self, source: FileStoreConfig, tmp_path: Path) -> None:
        class Interrupt(Exception):
            pass

        def stop_after_two(done: int, _total: int | None) -> None:
            if done == 2:
                raise Interrupt

        with pytest.raises(Interrupt):
            export_store(source, tmp_path / "dst", progress=stop_after_two)
        seen: list[tuple[int, int | None]] = []
        report = export_store(source, tmp_path / "dst", progress=lambda d, t: seen.append((d, t)))
        assert report.ok
        assert seen[-1] == (4, 4)
        with FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst:
            assert len(dst.list_run_records()) == 4
            assert all(dst.list_artifacts(r.run_id) for r in dst.list_run_records())


class TestConflictsAndVerification:
    def test_a_different_destination_record_is_left_alone(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        export_store(source, tmp_path / "dst")
        dst_config = FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP)
        with dst_config.connect() as dst:
            first = min(dst.list_run_records(), key=lambda r: r.run_id)
            changed = RunRecord.running(run_id=first.run_id, experiment_id=EXP, started_at=T0)
            dst.put_run_record(changed.failed(ValueError("local edit")))
        report = export_store(source, tmp_path / "dst")
        assert report.counts["records"].conflicts == 1
        assert first.run_id in report.problems[0]
        with dst_config.connect() as dst:
            kept = dst.get_run_record(first.run_id)
            assert kept is not None
            assert kept.status == "failed"
        forced = export_store(source, tmp_path / "dst", overwrite=True)
        assert forced.counts["records"].copied == 1
        with dst_config.connect() as dst:
            assert dst.get_run_record(first.run_id) == first

    def test_a_tampered_source_artifact_is_not_copied(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        with source.scoped(EXP).connect() as src:
            run = min(src.list_run_records(), key=lambda r: r.run_id)
            (src.get_working_directory() / run.artifacts[0].uri).write_bytes(b"tampered")
        report = export_store(source, tmp_path / "dst")
        assert report.counts["artifacts"].failed == 1
        assert "does not match its recorded sha256" in report.problems[0]
        assert not report.ok
        with FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst:
            assert dst.list_artifacts(run.run_id) == []

    @pytest.mark.parametrize("damage", [b"bit rot", b""])
    def test_a_rerun_checks_the_destination_bytes_and_repairs_them(
        self, source: FileStoreConfig, tmp_path: Path, damage: bytes
    ) -> None:
        export_store(source, tmp_path / "dst")
        dst_config = FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP)
        with dst_config.connect() as dst:
            run = min(dst.list_run_records(), key=lambda r: r.run_id)
            descriptor = dst.list_artifacts(run.run_id)[0]
            (dst.get_working_directory() / descriptor.uri).write_bytes(damage)
        for overwrite in (False, True):
            report = export_store(source, tmp_path / "dst", overwrite=overwrite)
            assert report.ok, report.problems
            if not overwrite:
                assert report.counts["artifacts"].copied == 1
                assert [descriptor.name in line for line in report.repaired] == [True]
        with source.scoped(EXP).connect() as src, dst_config.connect() as dst:
            expected = src.get_artifact(run.run_id, descriptor.name)
            assert dst.get_artifact(run.run_id, descriptor.name) == expected


class TestUndecodableDocuments:
    def test_a_corrupt_source_record_is_a_failed_item_and_the_rest_arrive(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        directory = Path(source.root) / "exp_1.0"
        bad = sorted((directory / "runs").glob("*.json"))[1]
        bad.write_bytes(b'{"schema_version":1,"run_id":')
        report = export_store(source, tmp_path / "dst")
        assert not report.ok
        assert report.counts["records"].copied == 3
        assert report.counts["records"].failed == 1
        (problem,) = report.problems
        assert str(bad) in problem
        assert "not copied" in problem
        with FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst:
            assert len(dst.list_run_records()) == 3
            assert dst.get_run_record(bad.stem) is None

    def test_corrupt_derived_metrics_and_a_corrupt_destination_record_are_failed_items(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        assert export_store(source, tmp_path / "dst").ok
        src_dir, dst_dir = Path(source.root) / "exp_1.0", tmp_path / "dst" / "exp_1.0"
        first, second = sorted(p.stem for p in (src_dir / "runs").glob("*.json"))[:2]
        (src_dir / "derived" / f"{first}.json").write_bytes(b"[")
        (dst_dir / "runs" / f"{second}.json").write_bytes(b"{")
        report = export_store(source, tmp_path / "dst")
        assert report.counts["derived"].failed == 1
        assert report.counts["records"].failed == 1
        assert report.counts["records"].skipped == 3
        assert len(report.problems) == 2
        assert (dst_dir / "runs" / f"{second}.json").read_bytes() == b"{"  # left alone


class TestOtherShapes:
    def test_memory_store_to_file_store(self, tmp_path: Path) -> None:
        with MemoryStoreConfig(experiment_id=EXP).connect() as mem:
            ids = _fill(mem)
            report = export_store(mem, tmp_path / "dst", EXP)
        assert report.ok, report.problems
        with FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP).connect() as dst:
            assert sorted(r.run_id for r in dst.list_run_records()) == sorted(ids)

    def test_standalone_source_into_a_collection(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        standalone = Path(source.root) / "exp_1.0"
        report = export_store(str(standalone), tmp_path / "backup")
        assert report.experiments == [EXP]
        assert (tmp_path / "backup" / "exp_1.0" / "_meta.json").is_file()

    def test_the_metalab_0_1_collection_exports_whole(
        self, golden_collection: Path, tmp_path: Path
    ) -> None:
        before = _tree_digest(golden_collection)
        report = export_store(golden_collection, tmp_path / "dst")
        assert report.ok, report.problems
        assert report.experiments == ["golden:0.1"]
        assert report.counts["records"].copied == 6
        assert report.counts["artifacts"].copied == 4
        assert report.counts["logs"].copied == 6
        assert _tree_digest(golden_collection) == before
        with FileStoreConfig(
            root=str(tmp_path / "dst"), experiment_id="golden:0.1"
        ).connect() as dst:
            assert len(dst.list_run_records()) == 6


class TestSeriesExport:
    def test_grown_series_are_copied_and_differing_ones_are_conflicts(
        self, source: FileStoreConfig, tmp_path: Path
    ) -> None:
        export_store(source, tmp_path / "dst")
        dst_config = FileStoreConfig(root=str(tmp_path / "dst"), experiment_id=EXP)
        with source.scoped(EXP).connect() as src, dst_config.connect() as dst:
            grown, changed = sorted(r.run_id for r in src.list_run_records())[:2]
            src.append_series(grown, [SeriesPoint("loss", 3, 0.2, 9.0)])  # the run went on
            dst.append_series(changed, [SeriesPoint("loss", 0, 7.0, 9.0)], restart=True)
        report = export_store(source, tmp_path / "dst")
        assert report.counts["series"].copied == 1
        assert report.counts["series"].conflicts == 1
        assert any(f"the series of run {changed}" in p for p in report.problems)
        forced = export_store(source, tmp_path / "dst", overwrite=True)
        assert forced.counts["series"].copied == 1
        with source.scoped(EXP).connect() as src, dst_config.connect() as dst:
            for run_id in (grown, changed):
                assert dst.get_series(run_id) == src.get_series(run_id)
