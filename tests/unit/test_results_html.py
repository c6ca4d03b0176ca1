"""Notebook views: ``Results`` and ``Run`` render as compact, escaped HTML tables."""

from __future__ import annotations

import msgspec

from metalab.records import RunRecord
from metalab.results import Results
from metalab.store import MemoryStoreConfig
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
