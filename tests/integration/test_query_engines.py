"""The query language through the public API, on every store, and on the real index."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from metalab import load_results
from metalab.errors import CorruptRecordError, QuerySyntaxError
from metalab.query import F, build_query, select
from metalab.query.sql import compile_select
from metalab.records import JSONValue, RunRecord
from metalab.store import (
    FileStoreConfig,
    MemoryStoreConfig,
    PostgresStoreConfig,
    StoreConfig,
    SupportsBulkPut,
    SupportsQuery,
)

EXP = "sweep:1.0"
T0 = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def _records(n: int, seed: int = 7) -> list[RunRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rec = RunRecord.running(
            run_id=f"{i:016x}",
            experiment_id=EXP,
            params={"lr": rng.choice([1e-4, 1e-3, 1e-2, 0.1]), "opt": rng.choice(OPTIMIZERS)},
            started_at=T0 + dt.timedelta(seconds=i),
        )
        status = rng.choice(["success", "success", "success", "failed"])
        if status == "success":
            out.append(rec.succeeded(metrics={"acc": round(rng.random(), 4)}, finished_at=T0))
        else:
            out.append(rec.failed(RuntimeError("x"), finished_at=T0))
    return out


def _fill(config: StoreConfig, records: list[RunRecord]) -> None:
    with config.connect() as store:
        for record in records:
            store.put_run_record(record)
        for record in records[::3]:
            store.put_derived(record.run_id, {"gain": len(record.run_id) + int(record.run_id, 16)})


def _store_config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    """A fresh store of the kind ``request.param`` names, scoped to ``EXP``."""
    kind = request.param
    if kind == "file":
        return FileStoreConfig(root=str(tmp_path / "files"), experiment_id=EXP)
    if kind == "memory":
        return MemoryStoreConfig(name=f"q-{tmp_path.name}", experiment_id=EXP)
    pg: PostgresStoreConfig = request.getfixturevalue("postgres_config")
    return pg.scoped(EXP)


@pytest.fixture(params=["file", "memory", "postgres"])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    cfg = _store_config(request, tmp_path)
    _fill(cfg, _records(60))
    return cfg


QUERY = 'status == "success" and params.opt in ["adam", "adamw"] and metrics.acc >= 0.25'


class TestLoadResultsWithAQuery:
    def test_every_store_returns_the_python_engines_answer(self, config: StoreConfig) -> None:
        query = build_query(QUERY, order_by=["-metrics.acc", "params.lr"], limit=7)
        with config.connect() as store:
            expected = select(store.list_run_records(EXP), query)  # the reference engine
        with load_results(
            config, where=QUERY, order_by=["-metrics.acc", "params.lr"], limit=7
        ) as found:
            assert found.run_ids == [r.run_id for r in expected]
            assert len(found) == 7
            accs = [run.metrics["acc"] for run in found]
            assert accs == sorted(accs, reverse=True)

    def test_derived_fields_are_queryable(self, config: StoreConfig) -> None:
        with load_results(config, where="derived.gain exists", order_by="derived.gain") as found:
            assert len(found) == 20
            gains = [run.derived["gain"] for run in found]
            assert gains == sorted(gains)

    def test_without_order_runs_come_oldest_first(self, config: StoreConfig) -> None:
        with load_results(config, where=F.status == "failed") as found:
            starts = [run.started_at for run in found]
            assert starts == sorted(starts)
            assert all(run.status == "failed" for run in found)

    def test_a_bad_query_is_reported_before_anything_is_read(self, config: StoreConfig) -> None:
        with pytest.raises(QuerySyntaxError):
            load_results(config, where="params.lr <")


class TestResultsFilter:
    def test_filter_with_a_query_matches_keyword_filters(self, config: StoreConfig) -> None:
        with load_results(config) as results:
            by_query = results.filter('status == "success" and params.opt == "adam"')
            by_keywords = results.filter(status="success", params={"opt": "adam"})
            assert sorted(by_query.run_ids) == sorted(by_keywords.run_ids)
            ordered = results.filter(order_by="metrics.acc desc", limit=3)
            assert len(ordered) == 3

    def test_a_filter_of_a_subset_stays_in_the_subset(self, config: StoreConfig) -> None:
        with load_results(config) as results:
            failed = results.failed
            assert 0 < len(failed) < len(results)
            assert set(failed.filter("params.lr exists").run_ids) == set(failed.run_ids)
            assert failed.filter('status == "success"').run_ids == []


class TestColumnProjection:
    def test_only_the_requested_columns_are_built(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
        _fill(config, _records(6))
        with load_results(config) as results:
            df = results.to_dataframe(columns=["run_id", "params.*", "metrics.acc"])
            assert list(df.columns) == ["run_id", "params.lr", "params.opt", "metrics.acc"]
            pl_df = results.to_polars(columns=["metrics.acc"])
            assert pl_df.columns == ["metrics.acc"]

    def test_derived_metrics_are_not_read_unless_asked_for(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
        records = _records(6)
        _fill(config, records)
        derived_file = tmp_path / "sweep_1.0" / "derived" / f"{records[0].run_id}.json"
        derived_file.write_bytes(b"{ corrupt")
        with load_results(config) as results:
            assert len(results.to_dataframe(columns=["run_id", "params.*"])) == 6
            with pytest.raises(CorruptRecordError):
                results.to_dataframe(columns=["derived.*"])

    def test_an_unknown_column_names_the_known_ones(self, tmp_path: Path) -> None:
        config = FileStoreConfig(root=str(tmp_path), experiment_id=EXP)
        _fill(config, _records(3))
        with load_results(config) as results, pytest.raises(KeyError, match=r"params\.lr"):
            results.to_dataframe(columns=["params.nope"])


MIXED: tuple[JSONValue, ...] = (1, 1.5, "a")


class TestFieldCatalog:
    @pytest.fixture
    def big(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
        """1,200 runs: more than the catalog samples from, one field only in the last."""
        records = [
            RunRecord.running(
                run_id=f"{i:016x}",
                experiment_id=EXP,
                params={"opt": OPTIMIZERS[i % 4], "width": 2000 - i, "mixed": MIXED[i % 3]},
                started_at=T0,
            ).succeeded(
                metrics={"acc": i / 1000, "late": 7} if i == 1199 else {"acc": i / 1000},
                finished_at=T0,
            )
            for i in range(1200)
        ]
        cfg = _store_config(request, tmp_path)
        with cfg.connect() as store:
            assert isinstance(store, SupportsBulkPut)
            store.put_run_records(records)
            store.put_derived(records[0].run_id, {"gain": 1.0})
        return cfg

    @pytest.mark.parametrize("big", ["file", "memory", "postgres"], indirect=True)
    def test_every_store_gives_the_same_catalog(self, big: StoreConfig) -> None:
        with big.connect() as store:
            assert isinstance(store, SupportsQuery)
            catalog = {info.field: info for info in store.fields(EXP)}
        assert sorted(catalog) == [
            "derived.gain",
            "metrics.acc",
            "metrics.late",
            "params.mixed",
            "params.opt",
            "params.width",
        ]
        width = catalog["params.width"]
        # Counts and ranges cover every run; samples the first 1,000 runs by run id.
        assert (width.types, width.count, width.min_value, width.max_value) == (
            ["int"],
            1200,
            801.0,
            2000.0,
        )
        assert width.samples == [1001, 1002, 1003, 1004, 1005]
        assert catalog["params.mixed"].types == ["float", "int", "str"]
        assert catalog["params.mixed"].samples == ["a", 1, 1.5]
        assert catalog["params.opt"].samples == ["adam", "adamw", "rmsprop", "sgd"]
        assert catalog["metrics.acc"].count == 1200
        late = catalog["metrics.late"]
        assert (late.count, late.samples) == (1, [])
        assert catalog["derived.gain"].samples == [1.0]


class TestIndexEngine:
    def test_injection_attempts_are_just_data(self, postgres_config: PostgresStoreConfig) -> None:
        evil = "x'); DROP TABLE runs; --"
        config = postgres_config.scoped(EXP)
        rec = RunRecord.running(
            run_id="e" * 16, experiment_id=EXP, params={evil: evil}, started_at=T0
        ).succeeded(metrics={evil: 1.0}, finished_at=T0)
        with config.connect() as store:
            store.put_run_record(rec)
            assert isinstance(store, SupportsQuery)
            found = store.query_runs(build_query((F.params[evil] == evil) & (F.metrics[evil] > 0)))
            assert [r.run_id for r in found] == [rec.run_id]
            assert store.query_runs(build_query(F.params["x"] == evil)) == []
            assert len(store.list_run_records()) == 1

    @pytest.mark.parametrize(
        ("params", "where"),
        [
            ({"$float": 3}, F.params["$float"] == 3),
            ({"$dict": {"x": 1}}, F.params["$dict"]["x"] == 1),
            ({"opt": {"$float": "NaN"}}, F.params["opt"]["$float"] == "NaN"),
            ({"k\x00": 1}, F.params["k\x00"] == 1),
            ({"s": "a\x00b"}, F.params["s"] == "a\x00b"),
        ],
    )
    def test_keys_and_strings_jsonb_cannot_hold_as_they_are_match_as_in_python(
        self, postgres_config: PostgresStoreConfig, params: dict[str, JSONValue], where: object
    ) -> None:
        config = postgres_config.scoped(EXP)
        rec = RunRecord.running(
            run_id="f" * 16, experiment_id=EXP, params=params, started_at=T0
        ).succeeded(finished_at=T0)
        other = RunRecord.running(run_id="0" * 16, experiment_id=EXP, started_at=T0)
        query = build_query(where)  # type: ignore[arg-type]
        assert [r.run_id for r in select([rec, other], query)] == [rec.run_id]
        with config.connect() as store:
            store.put_run_records([rec, other])
            assert isinstance(store, SupportsQuery)
            assert [r.run_id for r in store.query_runs(query)] == [rec.run_id]

    def test_the_text_of_a_nul_escape_is_text_not_a_nul(
        self, postgres_config: PostgresStoreConfig
    ) -> None:
        config = postgres_config.scoped(EXP)
        six = "\\u0000"  # a backslash, 'u' and four zeros: no NUL in it
        rec = RunRecord.running(
            run_id="d" * 16, experiment_id=EXP, params={"s": six}, started_at=T0
        ).succeeded(finished_at=T0)
        with config.connect() as store:
            store.put_run_record(rec)
            assert isinstance(store, SupportsQuery)
            assert [r.run_id for r in store.query_runs(build_query(F.params["s"] == six))] == [
                rec.run_id
            ]
            assert store.query_runs(build_query(F.params["s"] == "\ufffd")) == []
            store.rebuild_index()
            assert len(store.query_runs(build_query(F.params["s"] == six))) == 1

    def test_common_filters_use_the_indexes(
        self, postgres_config: PostgresStoreConfig, postgres_url: str
    ) -> None:
        # Ten experiments, twenty optimizers: the filters below select a few percent
        # of the table, as they do in a real collection, so a scan would be wasteful.
        rng = random.Random(3)
        records = [
            RunRecord.running(
                run_id=f"{e:02d}{i:014x}",
                experiment_id=f"sweep{e}:1.0",
                params={"opt": f"opt{rng.randrange(20)}", "lr": rng.random()},
                started_at=T0,
            ).succeeded(metrics={"acc": rng.random()}, finished_at=T0)
            if i % 10
            else RunRecord.running(
                run_id=f"{e:02d}{i:014x}", experiment_id=f"sweep{e}:1.0", started_at=T0
            ).failed(RuntimeError("x"), finished_at=T0)
            for e in range(10)
            for i in range(400)
        ]
        with postgres_config.connect() as store:
            assert isinstance(store, SupportsBulkPut)
            store.put_run_records(records)
        schema = postgres_config.schema
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "runs")))
            for experiment, where, index in [
                ("sweep4:1.0", 'status == "failed"', "runs_experiment_status_idx"),
                ("sweep4:1.0", 'status in ["failed", "cancelled"]', "runs_experiment_status_idx"),
                ("sweep4:1.0", 'params.opt == "opt3" and metrics.acc >= 0.5', "runs_"),
                (None, 'params.opt == "opt3" and metrics.acc >= 0.5', "runs_params_idx"),
                (None, 'params.opt in ["opt1", "opt2"]', "runs_params_idx"),
                (None, f'run_id == "{records[5].run_id}"', "runs_pkey"),
            ]:
                query = build_query(where, limit=20)
                statement, params = compile_select(
                    query, schema=schema, experiment_id=experiment, columns=sql.SQL("r.run_id")
                )
                explain = sql.SQL("EXPLAIN ") + statement
                plan = "\n".join(row[0] for row in conn.execute(explain, params).fetchall())
                assert index in plan, plan
                assert "Seq Scan on runs" not in plan, plan
                if where.startswith("status"):
                    # The index answers the status itself, not only the experiment.
                    conditions = [ln for ln in plan.splitlines() if "Index Cond" in ln]
                    assert any("status" in ln for ln in conditions), plan
