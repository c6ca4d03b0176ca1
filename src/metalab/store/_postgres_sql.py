"""Every statement of the Postgres index, composed once per schema, grouped by table.

Each group is a frozen dataclass of ready statements built by one small function
(:func:`run_statements`, :func:`derived_statements`, ...); :func:`statements` builds
them all for a schema. Column lists, conflict targets, ``EXCLUDED`` updates, staging
tables and ``COPY`` types come from the table specs of :mod:`._postgres_schema`, so a
statement never repeats the schema. The statements of the hot paths (one-row upserts
and lookups) are rendered to bytes once, instead of on every call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from psycopg import sql

from metalab.query.sql import sort_value
from metalab.store._postgres_schema import (
    CATALOG_CHANGES,
    DERIVED,
    EXPERIMENTS,
    FIELD_CATALOG,
    MANIFESTS,
    META,
    REBUILD_SUFFIX,
    RUNS,
    SERIES,
    SERIES_CHUNKS,
    SORT_METRICS,
    SORT_VALUES,
    Column,
    Table,
    column_list,
)
from metalab.store._rules import SQL_BATCH_ORDER, SQL_KEEPS_EDITS, SQL_REPLACES

__all__ = [
    "BATCH_WINNER_ORDER",
    "NOT_BACKWARDS",
    "CatalogStatements",
    "CopyIn",
    "DerivedStatements",
    "ExperimentStatements",
    "ManifestStatements",
    "MetaStatements",
    "RebuildStatements",
    "RunStatements",
    "SeriesStatements",
    "Statements",
    "catalog_statements",
    "derived_statements",
    "experiment_statements",
    "manifest_statements",
    "meta_statements",
    "rebuild_statements",
    "run_statements",
    "series_statements",
    "statements",
]

NOT_BACKWARDS: Final = sql.SQL(
    SQL_REPLACES.format(stored="r", new="EXCLUDED")
    + " AND "
    + SQL_KEEPS_EDITS.format(stored="r", new="EXCLUDED")
)
"""When an incoming run row may replace the indexed one ``r``: a ``running`` record
never replaces a finished one (:func:`~metalab.store._rules.replaces`), and a record
written before the indexed row's last edit never replaces it
(:func:`~metalab.store._rules.keeps_edits`). The ``WHERE`` of every upsert into
``runs AS r``."""

BATCH_WINNER_ORDER: Final = sql.SQL(f"run_id, {SQL_BATCH_ORDER}")
"""The ``ORDER BY`` under ``DISTINCT ON (run_id)`` that picks, among the rows of one run
in a staged batch, the one that wins as if they were put one by one
(:func:`~metalab.store._rules.batch_winner`; ``ordinal`` is the position in the batch)."""

_ORDINAL: Final = Column("bigint", name="ordinal", nullable=True)
_RESTAMP: Final = sql.SQL("indexed_at = clock_timestamp()")


@dataclass(frozen=True)
class CopyIn:
    """A binary ``COPY ... FROM STDIN`` and the types of the columns it sends.

    Attributes:
        statement: The ``COPY`` statement.
        types: The type of each column, in order, for ``Copy.set_types``.
    """

    statement: sql.Composed
    types: tuple[str, ...]


@dataclass(frozen=True)
class MetaStatements:
    """The server, the schema, and ``metalab_meta`` (the layout version, what is synced)."""

    server_encoding: sql.SQL
    lock: sql.SQL
    schema_exists: sql.SQL
    create_schema: sql.Composed
    exists: sql.SQL
    read: sql.Composed
    insert: sql.Composed
    read_needs_sync: sql.Composed
    set_file_root: sql.Composed
    mark_all_synced: tuple[sql.Composed, ...]
    mark_rebuilt: sql.Composed


@dataclass(frozen=True)
class ExperimentStatements:
    """The ``experiments`` table: which experiments exist, need a sync or a new catalog."""

    pending: sql.Composed
    insert_pending: sql.Composed
    mark_synced: sql.Composed
    touch: sql.Composed
    touch_many: sql.Composed
    forget_unlisted: sql.Composed
    list_all: sql.Composed
    listed: sql.Composed


@dataclass(frozen=True)
class RunStatements:
    """The ``runs`` table: one-row upsert and lookups, staged batch merges, sync."""

    upsert: bytes
    get: bytes
    get_in: bytes
    list_all: bytes
    list_in: bytes
    create_stage: sql.Composed
    copy_stage: CopyIn
    merge_stage: sql.Composed
    touch_stage_experiments: sql.Composed
    file_states: tuple[sql.Composed, sql.Composed]
    delete_by_key: sql.Composed
    summary: tuple[sql.Composed, sql.Composed]


@dataclass(frozen=True)
class DerivedStatements:
    """The ``derived`` table: one-row upsert and lookups, staged batch merges, sync."""

    upsert: bytes
    get: bytes
    get_in: bytes
    list_all: bytes
    list_in: bytes
    create_stage: sql.Composed
    copy_stage: CopyIn
    merge_stage: sql.Composed
    file_states: tuple[sql.Composed, sql.Composed]
    delete_by_key: sql.Composed


@dataclass(frozen=True)
class ManifestStatements:
    """The ``manifests`` table: one-row upsert, listings, staged batch merges, sync."""

    upsert: sql.Composed
    list_all: sql.Composed
    list_in: sql.Composed
    create_stage: sql.Composed
    copy_stage: CopyIn
    merge_stage: sql.Composed
    touch_stage_experiments: sql.Composed
    file_states: tuple[sql.Composed, sql.Composed]
    delete_by_key: sql.Composed


@dataclass(frozen=True)
class SeriesStatements:
    """The ``series`` and ``series_chunks`` tables: whole files, appends, reads, sync."""

    lock: sql.Composed
    upsert: sql.Composed
    delete_chunks: sql.Composed
    copy_chunks: CopyIn
    owner: sql.Composed
    read: sql.Composed
    read_arrays: sql.Composed
    file_states: tuple[sql.Composed, sql.Composed]
    delete_by_key: sql.Composed


@dataclass(frozen=True)
class CatalogStatements:
    """The ``field_catalog`` table: writes logged by triggers are folded in at the next read."""

    lock: sql.Composed
    delete: sql.Composed
    refresh: sql.Composed
    take: tuple[sql.Composed, sql.Composed, sql.Composed]
    taken: sql.Composed
    runs: sql.Composed
    fold: sql.Composed
    refresh_samples: sql.Composed
    clean: sql.Composed
    read: sql.Composed


@dataclass(frozen=True)
class SortStatements:
    """Kept metric orders: ``sort_metrics`` and ``sort_values`` (see :func:`trigger_statements`).

    The candidates (``candidates[descending]``) are a subquery of the run ids with
    the best values of one kept metric, every run tied with the last one included;
    their parameters are ``sort_e`` (experiment), ``sort_m`` (metric, in index
    form) and ``sort_n`` (how many).
    """

    is_kept: sql.Composed
    lock_runs: sql.Composed
    keep: sql.Composed
    fill: sql.Composed
    analyze: sql.Composed
    candidates: tuple[sql.Composed, sql.Composed]


@dataclass(frozen=True)
class RebuildStatements:
    """A rebuild: whole (tables built beside the live ones) or of one experiment."""

    read_committed: sql.SQL
    now: sql.SQL
    others_exist: sql.Composed
    copy_new: tuple[CopyIn, CopyIn, CopyIn, CopyIn, CopyIn]
    lock_live: sql.Composed
    carry_over: tuple[sql.Composed, ...]
    analyze_new: sql.Composed
    create_stages: tuple[sql.Composed, ...]
    copy_stage: tuple[CopyIn, CopyIn, CopyIn, CopyIn, CopyIn]
    replace_scope: tuple[sql.Composed, ...]
    insert_scope: tuple[sql.Composed, ...]


@dataclass(frozen=True)
class Statements:
    """Every statement of the index on one schema.

    Attributes:
        file_states: Per document kind (``runs``, ``derived``, ``manifests``,
            ``series``), the ``key, file_mtime_ns, file_size`` listing of every
            document and of one experiment's.
    """

    meta: MetaStatements
    experiments: ExperimentStatements
    runs: RunStatements
    derived: DerivedStatements
    manifests: ManifestStatements
    series: SeriesStatements
    catalog: CatalogStatements
    sort: SortStatements
    triggers: tuple[sql.Composed, ...]
    rebuild: RebuildStatements
    file_states: Mapping[str, tuple[sql.Composed, sql.Composed]]


def statements(schema: str) -> Statements:
    """Compose every statement of the index on ``schema``."""
    runs = run_statements(schema)
    derived = derived_statements(schema)
    manifests = manifest_statements(schema)
    series = series_statements(schema)
    return Statements(
        meta=meta_statements(schema),
        experiments=experiment_statements(schema),
        runs=runs,
        derived=derived,
        manifests=manifests,
        series=series,
        catalog=catalog_statements(schema),
        sort=sort_statements(schema),
        triggers=trigger_statements(schema),
        rebuild=rebuild_statements(schema),
        file_states={
            "runs": runs.file_states,
            "derived": derived.file_states,
            "manifests": manifests.file_states,
            "series": series.file_states,
        },
    )


def meta_statements(schema: str) -> MetaStatements:
    """The statements on the server, the schema and ``metalab_meta``."""
    meta = META.identifier(schema)
    return MetaStatements(
        server_encoding=sql.SQL("SELECT current_setting('server_encoding')"),
        lock=sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"),
        schema_exists=sql.SQL("SELECT to_regnamespace(quote_ident(%s))"),
        create_schema=_fmt("CREATE SCHEMA IF NOT EXISTS {s}", s=sql.Identifier(schema)),
        exists=sql.SQL("SELECT to_regclass(%s)"),
        read=_fmt("SELECT schema_version, file_root FROM {m}", m=meta),
        insert=_fmt(
            "INSERT INTO {m} (schema_version, file_root, needs_sync) VALUES (%s, %s, %s)", m=meta
        ),
        read_needs_sync=_fmt("SELECT needs_sync FROM {m}", m=meta),
        set_file_root=_fmt("UPDATE {m} SET file_root = %s", m=meta),
        mark_all_synced=(
            _fmt("UPDATE {m} SET needs_sync = false, synced_at = now()", m=meta),
            _fmt(
                "UPDATE {e} SET needs_sync = false WHERE needs_sync",
                e=EXPERIMENTS.identifier(schema),
            ),
        ),
        mark_rebuilt=_fmt(
            "UPDATE {m} SET needs_sync = false, rebuilt_at = now(), synced_at = now()", m=meta
        ),
    )


def experiment_statements(schema: str) -> ExperimentStatements:
    """The statements on the ``experiments`` table."""
    e = EXPERIMENTS.identifier(schema)
    return ExperimentStatements(
        pending=_fmt("SELECT experiment_id FROM {e} WHERE needs_sync", e=e),
        insert_pending=_fmt(
            "INSERT INTO {e} (experiment_id, needs_sync) SELECT unnest(%s::text[]), true", e=e
        ),
        mark_synced=_fmt(
            "UPDATE {e} SET needs_sync = false, catalog_dirty = true WHERE experiment_id = %s",
            e=e,
        ),
        touch=_touch(schema, sql.SQL("VALUES (%s)")),
        touch_many=_touch(schema, sql.SQL("SELECT unnest(%s::text[])")),
        forget_unlisted=_fmt(
            "DELETE FROM {e} WHERE experiment_id <> ALL(%s::text[]) "
            "AND NOT EXISTS (SELECT 1 FROM {r} WHERE {r}.experiment_id = {e}.experiment_id) "
            "AND NOT EXISTS (SELECT 1 FROM {m} WHERE {m}.experiment_id = {e}.experiment_id)",
            e=e,
            r=RUNS.identifier(schema),
            m=MANIFESTS.identifier(schema),
        ),
        list_all=_fmt("SELECT experiment_id FROM {e} ORDER BY 1", e=e),
        listed=_fmt("SELECT experiment_id FROM {e} WHERE experiment_id = %s", e=e),
    )


def run_statements(schema: str) -> RunStatements:
    """The statements on the ``runs`` table."""
    runs = RUNS.identifier(schema)
    stage = sql.Identifier("metalab_stage_runs")
    cols = column_list(RUNS.row_names)
    return RunStatements(
        upsert=_render(
            _fmt(
                "WITH touched AS ({touch}) {upsert}",
                touch=_touch(schema, sql.SQL("VALUES (%(experiment_id)s)")),
                upsert=_upsert(runs, RUNS, _values(RUNS), restamp=True),
            )
        ),
        get=_render(_fmt("SELECT doc FROM {r} WHERE run_id = %s", r=runs)),
        get_in=_render(
            _fmt("SELECT doc FROM {r} WHERE run_id = %s AND experiment_id = %s", r=runs)
        ),
        list_all=_render(_fmt("SELECT run_id, doc FROM {r}", r=runs)),
        list_in=_render(_fmt("SELECT run_id, doc FROM {r} WHERE experiment_id = %s", r=runs)),
        create_stage=_create_stage(stage, RUNS, _ORDINAL),
        copy_stage=_copy_in(stage, RUNS, _ORDINAL),
        merge_stage=_upsert(
            runs,
            RUNS,
            _fmt(
                "SELECT DISTINCT ON (run_id) {cols} FROM {st} ORDER BY {order}",
                cols=cols,
                st=stage,
                order=BATCH_WINNER_ORDER,
            ),
            restamp=True,
        ),
        touch_stage_experiments=_touch(
            schema, _fmt("SELECT DISTINCT experiment_id FROM {st}", st=stage)
        ),
        file_states=_file_states(schema, RUNS, "run_id"),
        delete_by_key=_delete_by_key(schema, RUNS, "run_id"),
        summary=(
            _fmt(_SUMMARY, r=runs, where=sql.SQL("")),
            _fmt(_SUMMARY, r=runs, where=sql.SQL("WHERE experiment_id = %s")),
        ),
    )


# One pass of the (experiment_id, status) index, whose INCLUDE columns make it an
# index-only scan: a group per experiment, status and distinct tag list.
_SUMMARY: Final = (
    "SELECT experiment_id, status, tags, count(*), max(greatest(started_at, finished_at)) "
    "FROM {r} {where} GROUP BY experiment_id, status, tags"
)


_EVENTS: Final = (
    ("insert", "INSERT", "NEW TABLE AS new_rows"),
    ("update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "DELETE", "OLD TABLE AS old_rows"),
)


def trigger_statements(schema: str) -> tuple[sql.Composed, ...]:
    """The functions and statement triggers that follow every write of ``runs`` and ``derived``.

    After each statement (its rows in the transition tables ``old_rows`` and
    ``new_rows``):

    - ``sort_values`` gets the kept metric values of the new ``runs`` rows and loses
      those of the old ones;
    - ``catalog_changes`` gets, for an experiment whose catalog is current, each
      written row's part as it was before (or that it did not exist): a row copy,
      no JSON work. A delete, or a run that moved to another experiment, marks the
      catalog dirty instead.

    A write holds ``FOR SHARE`` on its experiments' rows until it commits, and a
    catalog read takes ``FOR UPDATE`` on its experiment's row: the read sees every
    write whose change it folds, and a write it does not see logs its change after
    the read (for the next one).
    """
    runs, experiments = RUNS.identifier(schema), EXPERIMENTS.identifier(schema)
    kept, values = SORT_METRICS.identifier(schema), SORT_VALUES.identifier(schema)
    changes = CATALOG_CHANGES.identifier(schema)

    def of_derived(rows: str) -> sql.Composed:
        """The experiments of the runs of derived ``rows`` (a transition table)."""
        return _fmt(
            "SELECT x.experiment_id FROM {y} y JOIN {r} x ON x.run_id = y.run_id",
            y=sql.Identifier(rows),
            r=runs,
        )

    bodies = {
        "runs": _fmt(
            """
            BEGIN
                IF EXISTS (SELECT 1 FROM {kept}) THEN
                    IF TG_OP IN ('UPDATE', 'DELETE') THEN
                        DELETE FROM {values} s USING old_rows o WHERE s.run_id = o.run_id;
                    END IF;
                    IF TG_OP IN ('INSERT', 'UPDATE') THEN
                        {sort_insert};
                    END IF;
                END IF;
                IF TG_OP = 'DELETE' THEN
                    {dirty_old};
                    RETURN NULL;
                END IF;
                {share_new};
                IF TG_OP = 'UPDATE' THEN
                    {dirty_moved};
                    INSERT INTO {x} (experiment_id, run_id, kind, existed, params, metrics)
                    SELECT o.experiment_id, o.run_id, 'runs', true, o.params, o.metrics
                    FROM old_rows o JOIN {e} e ON e.experiment_id = o.experiment_id
                    WHERE NOT e.catalog_dirty;
                ELSE
                    INSERT INTO {x} (experiment_id, run_id, kind, existed)
                    SELECT n.experiment_id, n.run_id, 'runs', false
                    FROM new_rows n JOIN {e} e ON e.experiment_id = n.experiment_id
                    WHERE NOT e.catalog_dirty;
                END IF;
                RETURN NULL;
            END
            """,
            kept=kept,
            values=values,
            sort_insert=_sort_rows(schema, sql.SQL("new_rows"), sql.SQL("true")),
            dirty_old=_dirty(experiments, sql.SQL("SELECT experiment_id FROM old_rows")),
            share_new=_share(experiments, sql.SQL("SELECT experiment_id FROM new_rows")),
            dirty_moved=_dirty(
                experiments,
                sql.SQL(
                    "SELECT unnest(ARRAY[o.experiment_id, n.experiment_id]) FROM old_rows o "
                    "JOIN new_rows n ON n.run_id = o.run_id "
                    "WHERE n.experiment_id <> o.experiment_id"
                ),
            ),
            x=changes,
            e=experiments,
        ),
        "derived": _fmt(
            """
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    {dirty_old};
                    RETURN NULL;
                END IF;
                {share_new};
                IF TG_OP = 'UPDATE' THEN
                    INSERT INTO {x} (experiment_id, run_id, kind, existed, metrics)
                    SELECT r.experiment_id, o.run_id, 'derived', true, o.metrics
                    FROM old_rows o JOIN {r} r ON r.run_id = o.run_id
                    JOIN {e} e ON e.experiment_id = r.experiment_id
                    WHERE NOT e.catalog_dirty;
                ELSE
                    INSERT INTO {x} (experiment_id, run_id, kind, existed)
                    SELECT r.experiment_id, n.run_id, 'derived', false
                    FROM new_rows n JOIN {r} r ON r.run_id = n.run_id
                    JOIN {e} e ON e.experiment_id = r.experiment_id
                    WHERE NOT e.catalog_dirty;
                END IF;
                RETURN NULL;
            END
            """,
            dirty_old=_dirty(experiments, of_derived("old_rows")),
            share_new=_share(experiments, of_derived("new_rows")),
            x=changes,
            r=runs,
            e=experiments,
        ),
    }
    statements: list[sql.Composed] = []
    for table, body in (("runs", bodies["runs"]), ("derived", bodies["derived"])):
        name = f"metalab_{table}_changed"
        function = sql.Identifier(schema, name)
        target = sql.Identifier(schema, table)
        statements.append(
            _fmt(
                "CREATE OR REPLACE FUNCTION {f}() RETURNS trigger LANGUAGE plpgsql AS {body}",
                f=function,
                body=sql.Literal(body.as_string(None)),
            )
        )
        for suffix, event, referencing in _EVENTS:
            trigger = sql.Identifier(f"{name}_{suffix}")
            statements.append(_fmt("DROP TRIGGER IF EXISTS {t} ON {r}", t=trigger, r=target))
            statements.append(
                _fmt(
                    "CREATE TRIGGER {t} AFTER {event} ON {r} REFERENCING {referencing} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION {f}()",
                    t=trigger,
                    event=sql.SQL(event),
                    r=target,
                    referencing=sql.SQL(referencing),
                    f=function,
                )
            )
    return tuple(statements)


def _dirty(experiments: sql.Identifier, ids: sql.Composable) -> sql.Composed:
    """Mark the catalogs of the experiments ``ids`` lists dirty (recomputed at the next read)."""
    return _fmt(
        "UPDATE {e} SET catalog_dirty = true WHERE experiment_id IN ({ids}) AND NOT catalog_dirty",
        e=experiments,
        ids=ids,
    )


def _share(experiments: sql.Identifier, ids: sql.Composable) -> sql.Composed:
    """Hold the rows of the experiments ``ids`` lists until commit (``PERFORM``, plpgsql)."""
    return _fmt(
        "PERFORM 1 FROM {e} WHERE experiment_id IN ({ids}) ORDER BY experiment_id FOR SHARE",
        e=experiments,
        ids=ids,
    )


def sort_statements(schema: str) -> SortStatements:
    """The statements that keep and read the order of the metrics queries sort on."""
    runs, kept, values = (spec.identifier(schema) for spec in (RUNS, SORT_METRICS, SORT_VALUES))
    candidates = tuple(
        _fmt(
            "SELECT run_id FROM {values} WHERE experiment_id = %(sort_e)s "
            "AND metric = %(sort_m)s ORDER BY {order} "
            "FETCH FIRST %(sort_n)s ROWS WITH TIES",
            values=values,
            order=sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(direction))
                for n in ("category", "bool_value", "num_value", "str_value")
            ),
        )
        for direction in ("ASC", "DESC")
    )
    return SortStatements(
        is_kept=_fmt("SELECT 1 FROM {kept} WHERE experiment_id = %s AND metric = %s", kept=kept),
        lock_runs=_fmt("LOCK TABLE {r} IN SHARE MODE", r=runs),
        keep=_fmt(
            "INSERT INTO {kept} (experiment_id, metric) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            kept=kept,
        ),
        fill=_sort_rows(
            schema,
            _fmt("(SELECT * FROM {r} WHERE experiment_id = %(e)s)", r=runs),
            sql.SQL("k.metric = %(m)s"),
        ),
        # Statistics of the new rows at once: the top-k plan needs them.
        analyze=_fmt("ANALYZE {v}", v=values),
        candidates=(candidates[0], candidates[1]),
    )


def _sort_rows(schema: str, source: sql.Composable, which: sql.Composable) -> sql.Composed:
    """Insert the sortable parts of the kept metrics of the runs in ``source``."""
    value = sort_value(sql.SQL("x.j"))
    return _fmt(
        "INSERT INTO {values} ({cols}) "
        "SELECT n.experiment_id, k.metric, v.category, v.b, v.num, v.str, n.run_id "
        "FROM {source} n JOIN {kept} k ON k.experiment_id = n.experiment_id AND {which} "
        "CROSS JOIN LATERAL (SELECT n.metrics -> k.metric AS j) x "
        "CROSS JOIN LATERAL (SELECT {cat} AS category, {b} AS b, {num} AS num, "
        "{str} AS str) v "
        "WHERE v.category IS NOT NULL",
        values=SORT_VALUES.identifier(schema),
        cols=column_list(SORT_VALUES.row_names),
        source=source,
        kept=SORT_METRICS.identifier(schema),
        which=which,
        cat=value.category,
        b=value.boolean,
        num=value.number,
        str=value.text,
    )


def derived_statements(schema: str) -> DerivedStatements:
    """The statements on the ``derived`` table."""
    derived = DERIVED.identifier(schema)
    stage = sql.Identifier("metalab_stage_derived")
    values = _values_of_a_run(schema, DERIVED)
    return DerivedStatements(
        upsert=_render(_upsert(derived, DERIVED, _fmt("VALUES ({v})", v=values), restamp=True)),
        get=_render(_fmt("SELECT doc FROM {d} WHERE run_id = %s", d=derived)),
        get_in=_render(
            _fmt("SELECT doc FROM {d} WHERE run_id = %s AND experiment_id = %s", d=derived)
        ),
        list_all=_render(_fmt("SELECT run_id, doc FROM {d}", d=derived)),
        list_in=_render(_fmt("SELECT run_id, doc FROM {d} WHERE experiment_id = %s", d=derived)),
        create_stage=_create_stage(stage, DERIVED),
        copy_stage=_copy_in(stage, DERIVED),
        merge_stage=_upsert(derived, DERIVED, _distinct_on_key(stage, DERIVED), restamp=True),
        file_states=_file_states(schema, DERIVED, "run_id"),
        delete_by_key=_delete_by_key(schema, DERIVED, "run_id"),
    )


def manifest_statements(schema: str) -> ManifestStatements:
    """The statements on the ``manifests`` table."""
    manifests = MANIFESTS.identifier(schema)
    stage = sql.Identifier("metalab_stage_manifests")
    return ManifestStatements(
        upsert=_upsert(manifests, MANIFESTS, _values(MANIFESTS), restamp=True),
        list_all=_fmt("SELECT name, doc FROM {m} ORDER BY submitted_at, name", m=manifests),
        list_in=_fmt(
            "SELECT name, doc FROM {m} WHERE experiment_id = %s ORDER BY submitted_at, name",
            m=manifests,
        ),
        create_stage=_create_stage(stage, MANIFESTS),
        copy_stage=_copy_in(stage, MANIFESTS),
        merge_stage=_upsert(manifests, MANIFESTS, _distinct_on_key(stage, MANIFESTS), restamp=True),
        touch_stage_experiments=_fmt(
            "INSERT INTO {e} (experiment_id) SELECT DISTINCT experiment_id FROM {st} "
            "ON CONFLICT (experiment_id) DO NOTHING",
            e=EXPERIMENTS.identifier(schema),
            st=stage,
        ),
        file_states=_file_states(schema, MANIFESTS, "name"),
        delete_by_key=_delete_by_key(schema, MANIFESTS, "name"),
    )


def series_statements(schema: str) -> SeriesStatements:
    """The statements on the ``series`` and ``series_chunks`` tables."""
    series, chunks = SERIES.identifier(schema), SERIES_CHUNKS.identifier(schema)
    values = _values_of_a_run(schema, SERIES)
    return SeriesStatements(
        lock=_fmt(
            "SELECT run_id, points, chunks, generation, file_size FROM {s} "
            "WHERE run_id = ANY(%s) ORDER BY run_id FOR UPDATE",
            s=series,
        ),
        upsert=_upsert(series, SERIES, _fmt("VALUES ({v})", v=values), restamp=True),
        delete_chunks=_fmt("DELETE FROM {c} WHERE run_id = ANY(%s)", c=chunks),
        copy_chunks=_copy_in(chunks, SERIES_CHUNKS),
        owner=_fmt("SELECT run_id, experiment_id FROM {s} WHERE run_id = ANY(%s)", s=series),
        read=_fmt(
            "SELECT run_id, metric, steps, nums, others, ts FROM {c} "
            'WHERE run_id = ANY(%s) ORDER BY run_id, seq, metric COLLATE "C"',
            c=chunks,
        ),
        # The arrays in their binary form (array_send), which NumPy reads as it is.
        read_arrays=_fmt(
            "SELECT run_id, metric, array_send(steps), array_send(nums), others IS NOT NULL, "
            'array_send(ts) FROM {c} WHERE run_id = ANY(%s) ORDER BY run_id, seq, metric COLLATE "C"',
            c=chunks,
        ),
        file_states=_file_states(schema, SERIES, "run_id"),
        # A series file gone takes its points along.
        delete_by_key=_fmt(
            "WITH gone AS (DELETE FROM {s} x USING unnest(%s::text[], %s::text[]) AS k(key, exp) "
            "WHERE x.run_id = k.key AND (k.exp IS NULL OR x.experiment_id = k.exp) "
            "RETURNING x.run_id) DELETE FROM {c} WHERE run_id IN (SELECT run_id FROM gone)",
            s=series,
            c=chunks,
        ),
    )


def catalog_statements(schema: str) -> CatalogStatements:
    """The statements on the ``field_catalog`` table."""
    runs, derived = RUNS.identifier(schema), DERIVED.identifier(schema)
    experiments, catalog = EXPERIMENTS.identifier(schema), FIELD_CATALOG.identifier(schema)
    changes = CATALOG_CHANGES.identifier(schema)
    # The samples come from the first runs only (by run id): a DISTINCT ... ORDER BY
    # over every value of every field sorted millions of jsonb values.
    samples = _fmt(
        """
        first_runs AS (
            SELECT run_id FROM {r} WHERE experiment_id = %(e)s
            ORDER BY run_id COLLATE "C" LIMIT %(k)s
        ), samples AS MATERIALIZED (
            -- Computed once (MATERIALIZED: a refresh of the samples reads it per
            -- field). By type as jsonb orders them, strings in code-point order, lists
            -- and objects by their text in code-point order (jsonb's own order
            -- of strings follows the database's collation; Python's does not).
            SELECT field, to_jsonb((array_agg(value ORDER BY
                CASE jsonb_typeof(value) WHEN 'null' THEN 0 WHEN 'string' THEN 1
                    WHEN 'number' THEN 2 WHEN 'boolean' THEN 3 WHEN 'array' THEN 4
                    ELSE 5 END,
                CASE jsonb_typeof(value)
                    WHEN 'string' THEN value #>> '{{}}'
                    WHEN 'array' THEN value::text
                    WHEN 'object' THEN value::text
                END COLLATE "C",
                value))[1:%(n)s]) AS s
            FROM (SELECT DISTINCT field, value FROM ({first}) AS f) AS v
            GROUP BY field
        )
        """,
        r=runs,
        first=_catalog_pairs(
            _fmt("(SELECT * FROM {r} WHERE run_id IN (SELECT run_id FROM first_runs))", r=runs),
            derived,
        ),
    )
    # The changes logged before this read: the first logged old version of each
    # changed run's part (its state at the last read), taken out of the log into a
    # table of the transaction, analysed so the fold's joins are planned on its size.
    fold_table = sql.Identifier("metalab_catalog_fold")
    take = (
        _fmt(
            "CREATE TEMP TABLE {t} (run_id text, kind text, existed boolean, params jsonb, "
            "metrics jsonb) ON COMMIT DROP",
            t=fold_table,
        ),
        _fmt(
            """
            WITH gone AS (
                DELETE FROM {x} WHERE experiment_id = %(e)s
                RETURNING seq, run_id, kind, existed, params, metrics
            )
            INSERT INTO {t}
            SELECT DISTINCT ON (run_id, kind) run_id, kind, existed, params, metrics
            FROM gone ORDER BY run_id, kind, seq
            """,
            x=changes,
            t=fold_table,
        ),
        _fmt("ANALYZE {t}", t=fold_table),
    )
    # Each changed run's parts at the last read: as logged, or as they are now when
    # no write changed that part.
    was = _fmt(
        """
        was_run AS (
            SELECT run_id, existed, params, metrics FROM {t} WHERE kind = 'runs'
            UNION ALL
            SELECT r.run_id, true, r.params, r.metrics FROM {r} r
            WHERE r.experiment_id = %(e)s
                AND r.run_id IN (SELECT run_id FROM {t} WHERE kind = 'derived')
                AND r.run_id NOT IN (SELECT run_id FROM {t} WHERE kind = 'runs')
        ), was_derived AS (
            SELECT run_id, existed, metrics FROM {t} WHERE kind = 'derived'
            UNION ALL
            SELECT d.run_id, true, d.metrics FROM {d} d
            WHERE d.run_id IN (SELECT run_id FROM {t} WHERE kind = 'runs')
                AND d.run_id NOT IN (SELECT run_id FROM {t} WHERE kind = 'derived')
        ), old_runs AS (
            SELECT run_id, %(e)s::text AS experiment_id, params, metrics
            FROM was_run WHERE existed
        ), old_derived AS (
            SELECT run_id, metrics FROM was_derived WHERE existed
        ), now_runs AS (
            SELECT * FROM {r} WHERE experiment_id = %(e)s
                AND run_id IN (SELECT run_id FROM {t})
        ), old_pairs AS (
            {old_pairs}
        ), new_pairs AS (
            {new_pairs}
        ), removed AS (
            {removed}
        ), added AS (
            {added}
        )
        """,
        t=fold_table,
        r=runs,
        d=derived,
        old_pairs=_catalog_pairs(sql.SQL("old_runs"), sql.SQL("old_derived")),
        new_pairs=_catalog_pairs(sql.SQL("now_runs"), derived),
        # Compared by text (cheaper to hash than jsonb, and it tells 1 from 1.0).
        removed=_except(
            sql.SQL("SELECT run_id, field, repr FROM old_pairs"),
            sql.SQL("SELECT run_id, field, repr FROM new_pairs"),
        ),
        added=_fmt(
            "SELECT %(e)s::text AS experiment_id, field, repr::jsonb AS value FROM ({d}) AS d",
            d=_except(
                sql.SQL("SELECT run_id, field, repr FROM new_pairs"),
                sql.SQL("SELECT run_id, field, repr FROM old_pairs"),
            ),
        ),
    )
    return CatalogStatements(
        lock=_fmt(
            "SELECT catalog_dirty FROM {e} WHERE experiment_id = %s FOR UPDATE", e=experiments
        ),
        delete=_fmt("DELETE FROM {c} WHERE experiment_id = %s", c=catalog),
        # The whole catalog, from every value of the experiment; the changes logged
        # before it (in this statement's snapshot) are in it, so they are dropped.
        refresh=_fmt(
            """
            WITH gone AS (
                DELETE FROM {x} WHERE experiment_id = %(e)s
            ), {samples_ctes}
            INSERT INTO {c} (experiment_id, field, types, count, min_value, max_value, samples)
            SELECT %(e)s, field, {types}, count, min_value, max_value,
                COALESCE(samples.s, '[]'::jsonb)
            FROM ({stats}) AS stats LEFT JOIN samples USING (field)
            """,
            x=changes,
            samples_ctes=samples,
            types=_TYPES,
            stats=_field_stats(
                _fmt(
                    "SELECT experiment_id, field, value FROM ({p}) AS p",
                    p=_catalog_pairs(
                        _fmt("(SELECT * FROM {r} WHERE experiment_id = %(e)s)", r=runs), derived
                    ),
                )
            ),
            c=catalog,
        ),
        # What writes added since the last read (``take``), merged. No write of the
        # experiment commits meanwhile: its trigger waits for the read's lock.
        take=take,
        taken=_fmt("SELECT count(DISTINCT run_id) FROM {t}", t=fold_table),
        runs=_fmt("SELECT count(*) FROM {r} WHERE experiment_id = %s", r=runs),
        # Nothing is merged when a write took a value away: the first column says
        # so, and the catalog is recomputed.
        fold=_fmt(
            """
            WITH {was}, merged AS (
                INSERT INTO {c} AS c
                    (experiment_id, field, types, count, min_value, max_value, samples)
                SELECT %(e)s, field, {types}, count, min_value, max_value, '[]'::jsonb
                FROM ({stats}) AS s
                WHERE NOT EXISTS (SELECT 1 FROM removed)
                ORDER BY field
                ON CONFLICT (experiment_id, field) DO UPDATE SET
                    types = ARRAY(
                        SELECT DISTINCT t COLLATE "C"
                        FROM unnest(c.types || EXCLUDED.types) AS u(t) ORDER BY 1
                    ),
                    count = c.count + EXCLUDED.count,
                    min_value = LEAST(c.min_value, EXCLUDED.min_value),
                    max_value = GREATEST(c.max_value, EXCLUDED.max_value)
                RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM removed), (SELECT count(*) FROM merged),
                -- Whether a changed run is among the first runs, where samples come from.
                EXISTS (
                    SELECT 1 FROM {t} WHERE (
                        SELECT run_id FROM {r} WHERE experiment_id = %(e)s
                        ORDER BY run_id COLLATE "C" OFFSET %(k)s - 1 LIMIT 1
                    ) IS NULL OR run_id COLLATE "C" <= (
                        SELECT run_id FROM {r} WHERE experiment_id = %(e)s
                        ORDER BY run_id COLLATE "C" OFFSET %(k)s - 1 LIMIT 1
                    )
                )
            """,
            t=fold_table,
            r=runs,
            was=was,
            c=catalog,
            types=_TYPES,
            stats=_field_stats(sql.SQL("SELECT experiment_id, field, value FROM added")),
        ),
        refresh_samples=_fmt(
            """
            WITH {samples_ctes}
            UPDATE {c} AS c
            SET samples = COALESCE((SELECT s FROM samples WHERE samples.field = c.field), '[]')
            WHERE c.experiment_id = %(e)s
            """,
            samples_ctes=samples,
            c=catalog,
        ),
        clean=_fmt("UPDATE {e} SET catalog_dirty = false WHERE experiment_id = %s", e=experiments),
        read=_fmt(
            "SELECT field, types, count, min_value, max_value, samples "
            'FROM {c} WHERE experiment_id = %s ORDER BY field COLLATE "C"',
            c=catalog,
        ),
    )


def rebuild_statements(schema: str) -> RebuildStatements:
    """The statements of a rebuild, whole (under ``REBUILD_SUFFIX``) or scoped."""
    documents = (RUNS, DERIVED, MANIFESTS, SERIES)
    stages = {
        spec.name: sql.Identifier(f"metalab_rebuild_{spec.name}")
        for spec in (*documents, SERIES_CHUNKS)
    }
    series, chunks = SERIES.identifier(schema), SERIES_CHUNKS.identifier(schema)
    new_chunks = SERIES_CHUNKS.identifier(schema, REBUILD_SUFFIX)
    chunk_cols = column_list(SERIES_CHUNKS.row_names)
    # The chunks of the series rows that writers changed since the rebuild started.
    changed = _fmt("SELECT run_id FROM {s} WHERE indexed_at >= %s", s=series)
    return RebuildStatements(
        read_committed=sql.SQL("SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        now=sql.SQL("SELECT clock_timestamp()"),
        # Each test is a range on an index that starts with experiment_id (one
        # index probe; ``<>`` would scan the table: seconds at a million runs).
        others_exist=_fmt(
            "SELECT {tests}",
            tests=sql.SQL(" OR ").join(
                _fmt(
                    "EXISTS (SELECT 1 FROM {t} WHERE experiment_id {test})",
                    t=spec.identifier(schema),
                    test=sql.SQL(test),
                )
                for spec in (*documents, EXPERIMENTS)
                for test in ("< %(e)s", "> %(e)s", "IS NULL")
            ),
        ),
        # The new tables were created in the same transaction: their rows can be
        # written frozen and all-visible, so index-only scans (run summaries) need
        # no VACUUM first.
        copy_new=(
            _copy_in(RUNS.identifier(schema, REBUILD_SUFFIX), RUNS, freeze=True),
            _copy_in(DERIVED.identifier(schema, REBUILD_SUFFIX), DERIVED, freeze=True),
            _copy_in(MANIFESTS.identifier(schema, REBUILD_SUFFIX), MANIFESTS, freeze=True),
            _copy_in(SERIES.identifier(schema, REBUILD_SUFFIX), SERIES, freeze=True),
            _copy_in(new_chunks, SERIES_CHUNKS, freeze=True),
        ),
        # Statistics before the first query: without them the planner guesses how
        # many runs a filter matches, and picks plans that read every match.
        analyze_new=_fmt("ANALYZE {r}", r=RUNS.identifier(schema, REBUILD_SUFFIX)),
        lock_live=_fmt(
            "LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE",
            tables=sql.SQL(", ").join(
                spec.identifier(schema)
                for spec in (
                    *documents,
                    SERIES_CHUNKS,
                    EXPERIMENTS,
                    FIELD_CATALOG,
                    SORT_METRICS,
                    SORT_VALUES,
                    CATALOG_CHANGES,
                )
            ),
        ),
        # Rows that writers changed since the rebuild started are newer than what it
        # read from the files; they keep their indexed_at.
        carry_over=(
            *(
                _upsert(
                    spec.identifier(schema, REBUILD_SUFFIX),
                    spec,
                    _fmt(
                        "SELECT {cols} FROM {o} WHERE indexed_at >= %s",
                        cols=column_list(spec.row_names),
                        o=spec.identifier(schema),
                    ),
                    restamp=False,
                )
                for spec in documents
            ),
            _fmt("DELETE FROM {n} WHERE run_id IN ({c})", n=new_chunks, c=changed),
            _fmt(
                "INSERT INTO {n} ({cols}) SELECT {cols} FROM {p} WHERE run_id IN ({c})",
                n=new_chunks,
                cols=chunk_cols,
                p=chunks,
                c=changed,
            ),
        ),
        create_stages=tuple(
            _fmt(
                "CREATE TEMP TABLE {st} ({d}) ON COMMIT DROP",
                st=stages[spec.name],
                d=spec.stage_definition(),
            )
            for spec in (*documents, SERIES_CHUNKS)
        ),
        copy_stage=(
            _copy_in(stages[RUNS.name], RUNS),
            _copy_in(stages[DERIVED.name], DERIVED),
            _copy_in(stages[MANIFESTS.name], MANIFESTS),
            _copy_in(stages[SERIES.name], SERIES),
            _copy_in(stages[SERIES_CHUNKS.name], SERIES_CHUNKS),
        ),
        # A scoped rebuild keeps the rows that writers changed since it started
        # (they are newer than what it read) and replaces every other row of the
        # scope. Two statements: a data-modifying CTE would not let the insert see
        # the delete.
        # The chunks of the series replaced go first, while their rows still say which.
        replace_scope=(
            _fmt(
                "DELETE FROM {p} WHERE run_id IN "
                "(SELECT run_id FROM {s} WHERE experiment_id = %s AND indexed_at < %s)",
                p=chunks,
                s=series,
            ),
            *(
                _fmt(
                    "DELETE FROM {t} WHERE experiment_id = %s AND indexed_at < %s",
                    t=spec.identifier(schema),
                )
                for spec in documents
            ),
        ),
        # Chunks first: a series row still there is one a writer changed since the
        # rebuild started, whose points are newer than those read.
        insert_scope=(
            _fmt(
                "INSERT INTO {p} ({cols}) SELECT {cols} FROM {st} AS n "
                "WHERE NOT EXISTS (SELECT 1 FROM {s} WHERE {s}.run_id = n.run_id)",
                p=chunks,
                cols=chunk_cols,
                st=stages[SERIES_CHUNKS.name],
                s=series,
            ),
            *(
                _fmt(
                    "INSERT INTO {t} ({cols}) SELECT {cols} FROM {st} ON CONFLICT DO NOTHING",
                    t=spec.identifier(schema),
                    cols=column_list(spec.row_names),
                    st=stages[spec.name],
                )
                for spec in documents
            ),
        ),
    )


def _values_of_a_run(schema: str, spec: Table) -> sql.Composed:
    """The named parameters of a row of one run's document (derived metrics, series).

    Without an experiment (a store bound to none), the row takes the indexed run's.
    """
    return sql.SQL(", ").join(
        _fmt(
            "COALESCE({p}, (SELECT experiment_id FROM {r} WHERE run_id = %(run_id)s))",
            p=sql.Placeholder(name),
            r=RUNS.identifier(schema),
        )
        if name == "experiment_id"
        else sql.Placeholder(name)
        for name in spec.row_names
    )


def _fmt(template: str, **parts: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(**parts)


def _render(query: sql.Composed) -> bytes:
    """Render a hot-path statement once, instead of on every call."""
    return query.as_bytes(None)


def _excluded(names: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(
        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in names
    )


def _values(spec: Table) -> sql.Composed:
    """``VALUES (...)`` of a row passed as named parameters."""
    return _fmt("VALUES ({v})", v=sql.SQL(", ").join(sql.Placeholder(n) for n in spec.row_names))


def _upsert(
    target: sql.Composable, spec: Table, rows: sql.Composable, *, restamp: bool
) -> sql.Composed:
    """Insert ``rows`` (a ``VALUES`` or ``SELECT`` of the row columns) into ``target``.

    A conflicting row is overwritten, stamped with a new ``indexed_at`` if
    ``restamp``. Into ``runs`` (aliased ``r``), only where :data:`NOT_BACKWARDS`
    allows it: no upsert of a run can leave the rule out.
    """
    update = _excluded(spec.updated_names)
    if restamp:
        update = _fmt("{set}, {restamp}", set=update, restamp=_RESTAMP)
    guard = spec is RUNS
    return _fmt(
        "INSERT INTO {t}{alias} ({cols}) {rows} ON CONFLICT ({key}) DO UPDATE SET {set}{where}",
        t=target,
        alias=sql.SQL(" AS r" if guard else ""),
        cols=column_list(spec.row_names),
        rows=rows,
        key=column_list(spec.primary_key),
        set=update,
        where=_fmt(" WHERE {rule}", rule=NOT_BACKWARDS) if guard else sql.SQL(""),
    )


def _distinct_on_key(stage: sql.Identifier, spec: Table) -> sql.Composed:
    """One staged row per primary key (any of them)."""
    return _fmt(
        "SELECT DISTINCT ON ({key}) {cols} FROM {st}",
        key=column_list(spec.primary_key),
        cols=column_list(spec.row_names),
        st=stage,
    )


def _touch(schema: str, experiments: sql.Composable) -> sql.Composed:
    """List ``experiments`` (a ``VALUES`` or ``SELECT``); a new one's catalog is dirty.

    The writes to known experiments reach their catalogs through the triggers
    (:func:`trigger_statements`).
    """
    return _fmt(
        "INSERT INTO {e} (experiment_id) {rows} ON CONFLICT (experiment_id) DO NOTHING",
        e=EXPERIMENTS.identifier(schema),
        rows=experiments,
    )


def _create_stage(stage: sql.Identifier, spec: Table, *extra: Column) -> sql.Composed:
    """A session's staging table for batches, emptied at every commit."""
    return _fmt(
        "CREATE TEMP TABLE IF NOT EXISTS {st} ({d}) ON COMMIT DELETE ROWS",
        st=stage,
        d=spec.stage_definition(*extra),
    )


def _copy_in(target: sql.Identifier, spec: Table, *extra: Column, freeze: bool = False) -> CopyIn:
    columns = (*spec.row_columns, *extra)
    return CopyIn(
        _fmt(
            "COPY {t} ({cols}) FROM STDIN (FORMAT BINARY{freeze})",
            t=target,
            cols=column_list(c.name for c in columns),
            freeze=sql.SQL(", FREEZE" if freeze else ""),
        ),
        tuple(c.copy_type for c in columns),
    )


def _file_states(schema: str, spec: Table, key: str) -> tuple[sql.Composed, sql.Composed]:
    every = _fmt(
        "SELECT {k}, file_mtime_ns, file_size FROM {t}",
        k=sql.Identifier(key),
        t=spec.identifier(schema),
    )
    return every, _fmt("{every} WHERE experiment_id = %s", every=every)


def _delete_by_key(schema: str, spec: Table, key: str) -> sql.Composed:
    """Delete documents by ``(key, experiment or NULL)`` pairs (triggers mark catalogs dirty)."""
    return _fmt(
        "DELETE FROM {t} x USING unnest(%s::text[], %s::text[]) AS k(key, exp) "
        "WHERE x.{k} = k.key AND (k.exp IS NULL OR x.experiment_id = k.exp)",
        t=spec.identifier(schema),
        k=sql.Identifier(key),
    )


def _catalog_pairs(runs: sql.Composable, derived: sql.Composable) -> sql.Composed:
    """Every param, metric and derived value of the runs in ``runs`` (a table or subquery).

    Columns ``experiment_id, run_id, field, value, repr``: ``repr`` is the value's
    text, which tells ``1`` from ``1.0`` where ``jsonb`` equality does not.
    """
    return sql.SQL(
        """
        SELECT x.experiment_id, x.run_id, 'params.' || p.key AS field, p.value,
            p.value::text AS repr
        FROM {r} x, jsonb_each({params}) p
        UNION ALL
        SELECT x.experiment_id, x.run_id, 'metrics.' || m.key, m.value, m.value::text
        FROM {r} x, jsonb_each({metrics}) m
        UNION ALL
        {derived}
        """
    ).format(
        r=runs,
        params=_unwrapped(sql.SQL("x.params")),
        metrics=_unwrapped(sql.SQL("x.metrics")),
        derived=_derived_pairs(derived, runs),
    )


def _derived_pairs(derived: sql.Composable, runs: sql.Composable) -> sql.Composed:
    """The derived values of ``derived`` rows whose run is in ``runs`` (as :func:`_catalog_pairs`)."""
    return sql.SQL(
        "SELECT x.experiment_id, x.run_id, 'derived.' || d.key AS field, d.value, "
        "d.value::text AS repr "
        "FROM {d} y JOIN {r} x ON x.run_id = y.run_id, jsonb_each({extras}) d"
    ).format(d=derived, r=runs, extras=_unwrapped(sql.SQL("y.metrics")))


def _field_stats(values: sql.Composable) -> sql.Composed:
    """Per experiment and field of ``values`` (``experiment_id, field, value``): the stats.

    One hash aggregation gives the count, a flag per type (``has_int``, ...) and the
    range of the finite numbers.
    """
    return sql.SQL(
        """
        SELECT experiment_id, field,
            count(*) AS count,
            bool_or(kind = 'null') AS has_null,
            bool_or(kind = 'string') AS has_str,
            bool_or(kind = 'boolean') AS has_bool,
            bool_or(kind = 'array') AS has_list,
            -- jsonb keeps a number's scale (1.0) but not its exponent form:
            -- scale 0 is an int, as the codec wrote it.
            bool_or(scale(num) = 0) AS has_int,
            bool_or(scale(num) > 0 OR (kind = 'object' AND {marker})) AS has_float,
            bool_or(kind = 'object' AND NOT {marker}) AS has_dict,
            min(num)::float8 AS min_value,
            max(num)::float8 AS max_value
        FROM (
            -- OFFSET 0 keeps each value's type and number computed once,
            -- not once per aggregate that reads them.
            SELECT experiment_id, field, value, kind,
                CASE WHEN kind = 'number' THEN value::numeric END AS num
            FROM (
                SELECT experiment_id, field, value, jsonb_typeof(value) AS kind
                FROM ({values}) AS v OFFSET 0
            ) AS k OFFSET 0
        ) AS typed
        GROUP BY experiment_id, field
        """
    ).format(values=values, marker=_MARKER)


_MARKER: Final = sql.SQL("(value ? '$float' AND value - '$float' = '{}'::jsonb)")
_TYPES: Final = sql.SQL(
    """array_remove(ARRAY[
        CASE WHEN has_bool THEN 'bool' END, CASE WHEN has_dict THEN 'dict' END,
        CASE WHEN has_float THEN 'float' END, CASE WHEN has_int THEN 'int' END,
        CASE WHEN has_list THEN 'list' END, CASE WHEN has_null THEN 'null' END,
        CASE WHEN has_str THEN 'str' END
    ], NULL)"""
)


def _except(rows: sql.Composable, minus: sql.Composable) -> sql.Composed:
    """The rows of ``rows`` not in ``minus`` (both ``UNION ALL`` queries, kept whole)."""
    return _fmt("SELECT * FROM ({a}) AS a EXCEPT SELECT * FROM ({b}) AS b", a=rows, b=minus)


def _unwrapped(column: sql.Composable) -> sql.Composed:
    """A mapping column as the user wrote it, not wrapped.

    The codec wraps a mapping whose only key is a marker (``{"$float": ...}``) as
    ``{"$dict": {...}}``.
    """
    return sql.SQL(
        "CASE WHEN {c} ? '$dict' AND {c} - '$dict' = '{{}}'::jsonb "
        "AND jsonb_typeof({c} -> '$dict') = 'object' THEN {c} -> '$dict' ELSE {c} END"
    ).format(c=column)
