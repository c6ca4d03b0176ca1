"""Notebook views: ``Results`` and ``Run`` render as compact, escaped HTML tables."""

from __future__ import annotations

from pathlib import Path

import msgspec

from metalab.query import FieldCatalog, FieldInfo
from metalab.records import RunRecord
from metalab.results import Results
from metalab.store import FileStoreConfig, MemoryStoreConfig, SupportsQuery
from metalab.testing.store import make_record

EXP = "html:1"


def results(n: int) -> Results:
    store = MemoryStoreConfig(experiment_id=EXP).connect()
    records: list[RunRecord] = []
    for i in range(n):
        record = msgspec.structs.replace(
            make_record(EXP, f"{i:04d}" + "cafe" * 3),
            params={"lr": [0.1, 0.01][i % 2], "opt": "<b>adam</b>"},
        )
        records.append(record)
    store.put_run_records(records)
    return Results(records, store, owns_store=True)


def test_a_results_table_shows_the_first_runs_and_what_differs() -> None:
    view = results(25)
    page = view._repr_html_()
    assert page.startswith('<div class="metalab"><table><caption')
    assert "&lt;Results: 25 runs: 25 success&gt;" in page
    assert page.count("<tr>") == 21  # the header and the first 20 runs
    assert "<th>params.lr</th>" in page
    assert "params.opt" not in page  # the same in every run shown
    assert "<td>0000cafe</td>" in page  # short ids
    assert "<td>2024-05-06 07:08:09</td>" in page  # to the second
    assert "5 more runs not shown; to_dataframe() has them all" in page


def test_a_run_table_escapes_what_it_shows() -> None:
    run = results(2)[0]
    page = run._repr_html_()
    assert "<caption" in page
    assert "Run 0000cafecafecafe" in page
    assert "<td>params.opt</td><td>&lt;b&gt;adam&lt;/b&gt;</td>" in page
    assert "<b>" not in page
    assert "<td>metrics.loss</td><td>0.25</td>" in page


def test_a_failed_run_shows_its_error() -> None:
    store = MemoryStoreConfig(experiment_id=EXP).connect()
    record = make_record(EXP, "f" * 16, status="running")
    failed = record.failed(ValueError("bad & worse"), finished_at=record.started_at)
    store.put_run_record(failed)
    view = Results([failed], store, owns_store=True)
    assert "<td>ValueError</td>" in view._repr_html_()
    assert "ValueError: bad &amp; worse" in view[0]._repr_html_()


def test_a_field_catalog_is_a_list_with_a_table_for_notebooks() -> None:
    store = results(3).store
    assert isinstance(store, SupportsQuery)
    catalog = store.fields()
    assert isinstance(catalog, FieldCatalog)
    assert catalog == list(catalog)  # compares as the list it is
    assert catalog.experiment_id == EXP
    page = catalog._repr_html_()
    assert page.startswith('<div class="metalab"><table><caption')
    assert f"field catalog of {EXP!r}: {len(catalog)} field(s)" in page.replace("&#x27;", "'")
    assert "<th>field</th><th>types</th><th>runs</th><th>min</th><th>max</th>" in page
    assert "<tr><td>params.lr</td><td>float</td><td>3</td><td>0.01</td><td>0.1</td>" in page
    assert "&lt;b&gt;adam&lt;/b&gt;" in page  # samples escaped
    assert "<b>" not in page


def test_a_long_sample_is_cut_short_in_the_table() -> None:
    info = FieldInfo("params.blob", ["str"], 1, None, None, ["x" * 100, {"k": 1}])
    page = FieldCatalog([info])._repr_html_()
    assert "x" * 39 + "…" in page
    assert "x" * 40 not in page
    assert "{&#x27;k&#x27;: 1}" in page
    assert "field catalog: 1 field(s)" in page  # no experiment named


def test_a_file_store_gives_its_catalog_the_table_too(tmp_path: Path) -> None:
    with FileStoreConfig(root=str(tmp_path), experiment_id=EXP).connect() as store:
        store.put_run_record(make_record(EXP))
        catalog = store.fields()
    assert isinstance(catalog, FieldCatalog)
    assert catalog.experiment_id == EXP
