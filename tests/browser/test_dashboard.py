"""``metalab ui`` in a real browser: every page, clicked through as a user would.

The dashboard is served by ``python -m metalab ui`` over a FileStore collection that
``metalab.run`` wrote (see ``conftest.py``), and driven with Playwright in a headless
Chromium. What the pages show is compared with what ``metalab.load_results`` says.
Every test also fails when the page logged an error to the console, threw an
uncaught exception or violated the Content-Security-Policy, unless the test provoked
that error on purpose (``Dashboard.allow``). Screenshots of the pages are saved under
the test's ``tmp_path`` (and in ``$METALAB_SCREENSHOTS`` when it is set).
"""

from __future__ import annotations

import csv
import io
import re
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

import metalab
from metalab.records import RunRecord

if TYPE_CHECKING:
    from playwright.sync_api import Download, Page
    from tests.browser.conftest import Dashboard, Server, Sweep

pytestmark = pytest.mark.browser

# A 400 the page provokes on purpose (a filter that does not parse).
BAD_REQUEST: Final = r"status of 400"
STATUSES: Final = ("success", "failed", "running", "cancelled")
# The pager's texts: "1\u20134 of 6" (an en dash), "\u2039 Prev" and "Next \u203a".
DASH: Final = "\u2013"
PREV: Final = "\u2039 Prev"
NEXT: Final = "Next \u203a"


# --- helpers ----------------------------------------------------------------------


def records(sweep: Sweep, where: str | None = None, order_by: str | None = None) -> list[RunRecord]:
    found = metalab.load_results(
        str(sweep.root), sweep.experiment_id, where=where, order_by=order_by
    )
    return list(found.records)


def runs_hash(sweep: Sweep, **params: str) -> str:
    path = f"#/experiments/{urllib.parse.quote(sweep.experiment_id, safe='')}"
    return path + (f"?{urllib.parse.urlencode(params)}" if params else "")


def shown_run_ids(page: Page) -> list[str]:
    """The full run ids of the runs table's rows, top to bottom."""
    links = page.locator("main table tr td a[href^='#/runs/']")
    return [str(link.get_attribute("title")) for link in links.all()]


def all_headers(page: Page) -> list[str]:
    texts = page.locator("main table th").all_inner_texts()
    return [text.replace("▲", "").replace("▼", "").strip() for text in texts]


def headers(page: Page) -> list[str]:
    """The runs table's named column headers, sort arrows left out."""
    return [text for text in all_headers(page) if text]


def column(page: Page, name: str) -> list[str]:
    """The texts of one column of the runs table, top to bottom."""
    index = all_headers(page).index(name) + 1
    return page.locator(f"main table tr td:nth-child({index})").all_inner_texts()


def open_runs(dashboard: Dashboard, sweep: Sweep, **params: str) -> Page:
    dashboard.open(runs_hash(sweep, **params))
    page = dashboard.page
    page.locator("main table th.sortable").first.wait_for()  # the runs table's, no other
    return page


def wait_for_hash(page: Page, pattern: str) -> None:
    """Wait until the page routed to a hash matching ``pattern``."""
    page.wait_for_function(
        "(pattern) => new RegExp(pattern).test(decodeURIComponent(location.hash))", arg=pattern
    )


def mark_stale(page: Page) -> None:
    """Mark what the page shows now, so that :func:`fresh_runs_table` waits for a new one.

    A page is routed by its hash: no new document is loaded, so the load states say
    nothing; the page replaces its content once the data arrives.
    """
    page.evaluate(
        "() => { for (const el of document.querySelectorAll('main *')) el.dataset.stale = ''; }"
    )


def fresh_runs_table(page: Page) -> None:
    """Wait for a runs table drawn since :func:`mark_stale`."""
    page.locator("main table:not([data-stale]) th.sortable").first.wait_for()


def run_of(sweep: Sweep, status: str) -> RunRecord:
    return min((r for r in records(sweep) if r.status == status), key=lambda r: r.run_id)


def open_run(dashboard: Dashboard, run: RunRecord) -> Page:
    dashboard.open(f"#/runs/{run.run_id}")
    page = dashboard.page
    page.locator("main h1", has_text=run.run_id[:8]).wait_for()
    page.get_by_role("heading", name="Artifacts").wait_for()
    return page


def read_download(download: Download) -> bytes:
    saved = download.path()
    assert saved is not None, download.failure()
    return Path(saved).read_bytes()


# --- the experiments page ---------------------------------------------------------


def test_the_experiments_page_lists_each_experiment_with_its_counts(
    dashboard: Dashboard, collection: Sweep
) -> None:
    dashboard.open()
    page = dashboard.page
    page.get_by_role("heading", name="Experiments").wait_for()
    dashboard.screenshot("experiments")

    table_headers = page.locator("main table th").all_inner_texts()
    assert [name for name in table_headers if name] == [
        "experiment",
        "runs",
        *STATUSES,
        "last activity",
        "tags",
    ]
    row = page.locator("main table tr", has=page.get_by_role("link", name=collection.experiment_id))
    cells = row.locator("td").all_inner_texts()
    assert cells[0].splitlines() == [collection.experiment_id, "the browser tests' sweep"]
    expected = {"success": collection.runs - collection.failed, "failed": collection.failed}
    assert cells[1:6] == [str(collection.runs), *(str(expected.get(s, 0)) for s in STATUSES)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", cells[6])
    assert cells[7] == "dashboard"
    other = page.locator("main table tr", has=page.get_by_role("link", name=collection.other_id))
    assert other.locator("td").all_inner_texts()[1:3] == ["1", "1"]
    # The header names the store and that it is read-only.
    assert "read-only" in page.locator("#store").inner_text()


def test_clicking_an_experiment_shows_its_runs(dashboard: Dashboard, collection: Sweep) -> None:
    dashboard.open()
    page = dashboard.page
    page.get_by_role("link", name=collection.experiment_id).click()
    wait_for_hash(page, f"^#/experiments/{re.escape(collection.experiment_id)}$")
    page.locator("main table th.sortable").first.wait_for()
    dashboard.screenshot("runs")

    assert page.locator("main h1").inner_text() == collection.experiment_id
    assert headers(page) == [
        "run",
        "status",
        "started_at",
        "duration_ms",
        "error",
        "params.lr",
        "params.width",
        "metrics.acc",
        "metrics.loss",
        "metrics.val acc",
    ]
    # Newest first, every run on the one page.
    newest_first = records(collection, order_by="-started_at")
    assert shown_run_ids(page) == [r.run_id for r in newest_first]
    assert column(page, "status") == [r.status for r in newest_first]
    assert column(page, "error") == [
        collection.error_type if r.status == "failed" else "" for r in newest_first
    ]
    assert f"1{DASH}{collection.runs} of {collection.runs}" in page.locator("main").inner_text()
    # The breadcrumbs lead back to the experiments.
    page.locator("#crumbs").get_by_role("link", name="experiments").click()
    page.get_by_role("heading", name="Experiments").wait_for()


# --- the runs table ---------------------------------------------------------------


def test_clicking_a_header_sorts_descending_then_ascending(
    dashboard: Dashboard, collection: Sweep
) -> None:
    page = open_runs(dashboard, collection)
    assert page.locator("th[aria-sort]").all_inner_texts() == ["started_at ▼"]

    page.locator("th.sortable", has_text="metrics.acc").click()
    wait_for_hash(page, r"sort=-metrics\.acc")
    page.locator("th[aria-sort=descending]", has_text="metrics.acc").wait_for()
    dashboard.screenshot("runs-sorted-desc")
    descending = [r.run_id for r in records(collection, order_by="-metrics.acc")]
    assert shown_run_ids(page) == descending

    page.locator("th.sortable", has_text="metrics.acc").click()
    page.locator("th[aria-sort=ascending]", has_text="metrics.acc").wait_for()
    ascending = [r.run_id for r in records(collection, order_by="metrics.acc")]
    assert shown_run_ids(page) == ascending
    assert ascending != descending

    # A quoted key sorts as well.
    page.locator("th.sortable", has_text="metrics.val acc").click()
    page.locator("th[aria-sort=descending]", has_text="metrics.val acc").wait_for()
    by_val_acc = records(collection, order_by='-metrics."val acc"')
    assert shown_run_ids(page) == [r.run_id for r in by_val_acc]
    # Error is no sort key: its header is plain.
    assert page.locator("th", has_text="error").get_attribute("class") is None


def test_typing_a_filter_filters_the_runs(dashboard: Dashboard, collection: Sweep) -> None:
    page = open_runs(dashboard, collection)
    where = 'params.lr < 0.5 and status == "success"'
    page.get_by_label("filter").fill(where)
    mark_stale(page)
    page.get_by_label("filter").press("Enter")
    wait_for_hash(page, "where=")
    fresh_runs_table(page)
    dashboard.screenshot("runs-filtered")

    expected = records(collection, where=where, order_by="-started_at")
    assert 0 < len(expected) < collection.runs
    assert shown_run_ids(page) == [r.run_id for r in expected]
    assert page.get_by_label("filter").input_value() == where
    # The filter is part of the URL: reloading keeps it.
    page.reload()
    fresh_runs_table(page)
    assert shown_run_ids(page) == [r.run_id for r in expected]
    # Clear shows every run again.
    mark_stale(page)
    page.get_by_role("button", name="Clear").click()
    fresh_runs_table(page)
    assert "where=" not in page.evaluate("() => location.hash")
    assert len(shown_run_ids(page)) == collection.runs


def test_a_filter_that_does_not_parse_shows_the_error_and_where(
    dashboard: Dashboard, collection: Sweep
) -> None:
    dashboard.allow(BAD_REQUEST)
    page = open_runs(dashboard, collection)
    page.get_by_label("filter").fill("params.lr <")
    page.get_by_role("button", name="Filter").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    dashboard.screenshot("runs-bad-filter")

    assert "column" in alert.inner_text()
    caret = page.locator(".caret").inner_text().splitlines()
    assert caret[0] == "params.lr <"
    assert caret[1].strip() == "^"
    assert page.locator("main table").count() == 0
    # The filter is still there to be corrected.
    assert page.get_by_label("filter").input_value() == "params.lr <"
    assert any(re.search(BAD_REQUEST, p) for p in dashboard.problems)


def test_the_column_picker_adds_a_column(dashboard: Dashboard, collection: Sweep) -> None:
    page = open_runs(dashboard, collection)
    assert "params.optimizer" not in headers(page)  # the same in every run: not by default
    page.locator("summary", has_text="Columns").click()
    box = page.locator("details.columns input[value='params.optimizer']")
    assert not box.is_checked()
    assert (
        page.locator("details.columns label", has=page.locator("input[value='params.optimizer']"))
        .inner_text()
        .strip()
        .startswith("optimizer")
    )
    box.check()
    page.locator("details.columns input[value='finished_at']").check()
    dashboard.screenshot("runs-column-picker")
    mark_stale(page)
    page.locator("details.columns").get_by_role("button", name="Apply").click()
    wait_for_hash(page, "columns=")
    fresh_runs_table(page)
    dashboard.screenshot("runs-with-column")

    shown = headers(page)
    assert "finished_at" in shown
    before = ["status", "params.lr", "params.width", "metrics.acc", "metrics.val acc"]
    assert set(before) <= set(shown)  # the columns shown before stay
    assert column(page, "params.optimizer") == ["sgd"] * collection.runs
    # Default goes back to the default columns.
    page.locator("summary", has_text="Columns").click()
    mark_stale(page)
    page.locator("details.columns").get_by_role("button", name="Default").click()
    fresh_runs_table(page)
    assert "columns=" not in page.evaluate("() => location.hash")
    assert "params.optimizer" not in headers(page)


def test_the_pager_pages_through_the_runs(dashboard: Dashboard, collection: Sweep) -> None:
    page = open_runs(dashboard, collection, sort="params.lr", limit="4")
    in_order = [r.run_id for r in records(collection, order_by="params.lr")]
    assert shown_run_ids(page) == in_order[:4]
    assert f"1{DASH}4 of {collection.runs}" in page.locator("main").inner_text()
    assert page.get_by_role("button", name=PREV).is_disabled()

    page.get_by_role("button", name=NEXT).click()
    page.get_by_text(f"5{DASH}{collection.runs} of {collection.runs}").wait_for()
    assert shown_run_ids(page) == in_order[4:]
    assert page.get_by_role("button", name=NEXT).is_disabled()
    dashboard.screenshot("runs-page-2")

    page.get_by_role("button", name=PREV).click()
    page.get_by_text(f"1{DASH}4 of {collection.runs}").wait_for()
    assert shown_run_ids(page) == in_order[:4]
    # A larger page holds them all; the order stays.
    page.get_by_label("rows per page").select_option("25")
    page.get_by_text(f"1{DASH}{collection.runs} of {collection.runs}").wait_for()
    assert shown_run_ids(page) == in_order
    assert page.get_by_label("rows per page").input_value() == "25"


def test_the_csv_export_downloads_the_runs(dashboard: Dashboard, collection: Sweep) -> None:
    page = open_runs(dashboard, collection, sort="params.lr")
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.endswith("-runs.csv")
    rows = list(csv.reader(io.StringIO(read_download(download).decode("utf-8"))))
    header, body = rows[0], rows[1:]
    assert "params.lr" in header
    assert len(body) == collection.runs
    run_id = header.index("run_id") if "run_id" in header else 0
    expected = records(collection, order_by="params.lr")
    assert [row[run_id] for row in body] == [r.run_id for r in expected]


# --- the run page -----------------------------------------------------------------


def test_a_failed_run_shows_its_error_and_traceback(
    dashboard: Dashboard, collection: Sweep
) -> None:
    failed = run_of(collection, "failed")
    page = open_runs(dashboard, collection, where='status == "failed"')
    page.get_by_role("link", name=failed.run_id[:8]).click()
    page.get_by_role("heading", name="Error").wait_for()
    dashboard.screenshot("run-failed")

    assert page.locator("main h1 .status").inner_text() == "failed"
    error = page.locator("main div.error")
    assert error.locator("strong").inner_text() == collection.error_type
    assert collection.error_message in error.inner_text()
    traceback = page.locator("details", has=page.locator("summary", has_text="Traceback"))
    assert traceback.get_attribute("open") is not None
    text = traceback.locator("pre").inner_text()
    assert text.startswith("Traceback")
    assert f"{collection.error_type}: {collection.error_message}" in text
    # The breadcrumbs name the experiment and lead back to its runs.
    page.locator("#crumbs").get_by_role("link", name=collection.experiment_id).click()
    page.locator("main table th.sortable").first.wait_for()


def test_a_run_lists_its_artifacts_and_they_download(
    dashboard: Dashboard, collection: Sweep
) -> None:
    run = run_of(collection, "success")
    page = open_run(dashboard, run)
    artifacts = page.locator("main table", has=page.locator("th", has_text="sha256"))
    names = artifacts.locator("tr td:first-child").all_inner_texts()
    assert sorted(names) == ["plot", "summary", "weights"]
    weights = artifacts.locator("tr", has=page.locator("td", has_text="weights"))
    assert weights.locator("td").nth(3).inner_text() == "1.0 KiB"

    with page.expect_download() as info:
        weights.get_by_role("link", name="download").click()
    assert read_download(info.value) == collection.weights

    summary = artifacts.locator("tr", has=page.locator("td", has_text="summary"))
    summary.get_by_role("link", name="preview").click()
    preview = page.locator(".preview pre")
    preview.wait_for()
    dashboard.screenshot("run-artifact-preview")
    assert '"width"' in preview.inner_text()

    # An image is previewed as an image, loaded from the dashboard itself.
    plot = artifacts.locator("tr", has=page.locator("td", has_text="plot"))
    plot.get_by_role("link", name="preview").click()
    image = page.locator(".preview img")
    image.wait_for()
    page.wait_for_function("() => document.querySelector('.preview img').complete")
    size = image.evaluate("(img) => [img.naturalWidth, img.naturalHeight]")
    assert tuple(size) == collection.image_size
    dashboard.screenshot("run-image-preview")


def test_a_run_shows_the_tail_of_its_log(dashboard: Dashboard, collection: Sweep) -> None:
    run = run_of(collection, "success")
    page = open_run(dashboard, run)
    log = page.locator("main section", has=page.locator("strong.mono"))
    page.wait_for_function(
        "() => !document.querySelector('main section pre').textContent.startsWith('…')"
    )
    dashboard.screenshot("run-log")
    lines = log.locator("pre").inner_text().splitlines()
    assert collection.log_line in lines[-1]
    assert "training with lr" in lines[0]
    assert re.search(r"last \d+ of \d+ lines", log.inner_text())


def test_a_series_is_drawn_as_an_svg_line(dashboard: Dashboard, collection: Sweep) -> None:
    run = run_of(collection, "success")
    page = open_run(dashboard, run)
    chart = page.locator("figure.chart", has=page.locator("figcaption", has_text="loss"))
    chart.locator("svg path.curve").wait_for()
    dashboard.screenshot("run-series")

    assert f"{collection.steps} points" in chart.locator("figcaption").inner_text()
    assert chart.locator("svg").evaluate("(el) => el.namespaceURI") == "http://www.w3.org/2000/svg"
    path = str(chart.locator("svg path.curve").get_attribute("d"))
    assert path.startswith("M")
    assert path.count("L") == collection.steps - 1
    box = chart.locator("svg path.curve").bounding_box()
    assert box is not None
    assert box["width"] > 100  # drawn across the chart, not a dot


def test_the_run_summary_stays_in_its_column(dashboard: Dashboard, collection: Sweep) -> None:
    """At a laptop's width the Run table must not run into the Tags and Notes beside it."""
    dashboard.page.set_viewport_size({"width": 1024, "height": 768})
    page = open_run(dashboard, run_of(collection, "success"))
    dashboard.screenshot("run-1024px")
    cells = page.locator("main .grid").first.locator(":scope > div")
    summary = cells.nth(0).locator("table.kv").bounding_box()
    beside = cells.nth(1).bounding_box()
    assert summary is not None
    assert beside is not None
    assert beside["x"] > summary["x"]  # two columns side by side at this width
    assert summary["x"] + summary["width"] <= beside["x"]


# --- the page as a whole ----------------------------------------------------------


def test_no_page_logs_an_error_or_violates_the_csp(dashboard: Dashboard, collection: Sweep) -> None:
    """Every page is visited; the fixture fails the test on any console error."""
    dashboard.open()
    dashboard.page.get_by_role("heading", name="Experiments").wait_for()
    for status in ("success", "failed"):
        open_run(dashboard, run_of(collection, status))
    open_runs(dashboard, collection, sort="-params.width", limit="25")
    dashboard.open("#/no/such/page")
    dashboard.page.get_by_role("heading", name="No such page").wait_for()
    dashboard.screenshot("no-such-page")
    assert dashboard.unexpected() == []


def test_a_csp_violation_would_be_noticed(dashboard: Dashboard) -> None:
    """The watch for CSP violations works: an inline script is refused and reported."""
    dashboard.open()
    dashboard.page.evaluate(
        "() => { const s = document.createElement('script');"
        " s.textContent = 'window.ran = true'; document.body.append(s); }"
    )
    for _ in range(100):  # the report comes back from the page asynchronously
        if any(p.startswith("CSP:") for p in dashboard.problems):
            break
        dashboard.page.wait_for_timeout(50)
    assert dashboard.page.evaluate("() => window.ran === undefined")
    found = [p for p in dashboard.problems if p.startswith("CSP:")]
    assert found, dashboard.problems
    assert "script-src" in found[0]
    dashboard.problems.clear()


# --- the token --------------------------------------------------------------------


def test_with_a_token_a_page_needs_it(token_dashboard: Dashboard, collection: Sweep) -> None:
    dashboard = token_dashboard
    server: Server = dashboard.server
    assert server.token is not None
    dashboard.allow(r"status of 401")
    page = dashboard.page

    response = page.goto(server.url)
    assert response is not None
    assert response.status == 401
    assert "token" in page.locator("body").inner_text()
    dashboard.screenshot("token-missing")

    response = page.goto(f"{server.url}?token={server.token}")
    assert response is not None
    assert response.status == 200
    # The token moved into a cookie and out of the address bar.
    assert "token" not in page.url
    page.get_by_role("link", name=collection.experiment_id).click()
    page.locator("main table th.sortable").first.wait_for()
    dashboard.screenshot("token-runs")
    assert len(shown_run_ids(page)) == collection.runs
    with page.expect_download() as info:
        page.get_by_role("link", name="Export CSV").click()
    assert len(read_download(info.value).decode().splitlines()) == collection.runs + 1
