"""``metalab ui`` in a real browser: comparing runs and building plots.

Two runs picked in the runs table are compared side by side (``collection``); the
plot builder draws a scatter with a band, a histogram and learning curves over the
sweep of the docs' screenshots (``demo``: 3 seeds per point, so the bands have a
width). The numbers of marks drawn are computed from ``metalab.load_results``. As in
``test_dashboard.py``, every test fails on a console error or a CSP violation it
did not provoke, and saves a screenshot of each page it visits.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

import metalab
from metalab.records import RunRecord

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Locator, Page
    from tests.browser.conftest import Dashboard, Sweep
    from tests.browser.screenshots import Demo

pytestmark = pytest.mark.browser

BAD_REQUEST: Final = r"status of 400"
SVG_NS: Final = "http://www.w3.org/2000/svg"
DASH: Final = "\u2013"  # an en dash, in the pager and in tooltips


# --- helpers ----------------------------------------------------------------------


def load(root: Path, experiment_id: str) -> list[RunRecord]:
    return list(metalab.load_results(str(root), experiment_id).records)


def quoted(experiment_id: str) -> str:
    return urllib.parse.quote(experiment_id, safe="")


def wait_for_hash(page: Page, pattern: str) -> None:
    page.wait_for_function(
        "(pattern) => new RegExp(pattern).test(decodeURIComponent(location.hash))", arg=pattern
    )


def js_number(value: float) -> str:
    """A number as the page writes it: ``String(Number(v.toPrecision(6)))``."""
    rounded = float(f"{value:.6g}")
    return str(int(rounded)) if rounded.is_integer() else repr(rounded)


def texts(found: Locator) -> list[str]:
    """The text of each element (SVG elements have no ``innerText``)."""
    return [str(t) for t in found.evaluate_all("(els) => els.map((e) => e.textContent)")]


def titles(marks: Locator) -> list[str]:
    """The tooltip (the SVG ``<title>``) of each mark."""
    return texts(marks.locator("title"))


def tick_labels(svg: Locator) -> list[str]:
    """The texts of an SVG chart's tick labels (its axis names left out)."""
    return [t.strip() for t in texts(svg.locator("text:not(.label)"))]


def legend(chart: Locator) -> list[str]:
    return [t.strip() for t in chart.locator(".legend span").all_inner_texts()]


SETTLED: Final = "main figure.chart, main [role=alert]"
FRESH: Final = "main figure.chart:not([data-stale]), main [role=alert]:not([data-stale])"


def settled(page: Page) -> None:
    """Wait until the plots page shows what it asked for: a chart, or why there is none.

    The page is routed by its hash, so no load state says when it is drawn.
    """
    page.locator(SETTLED).first.wait_for()


def open_plots(dashboard: Dashboard, demo: Demo, **params: str) -> Page:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    dashboard.open(f"#/plots/{quoted(demo.experiment_id)}{query}")
    page = dashboard.page
    settled(page)
    return page


def choose_kind(page: Page, kind: str) -> None:
    """Pick a kind of plot: the page is drawn again at once, with that kind's fields."""
    mark_stale(page)
    page.get_by_label("kind", exact=True).select_option(kind)
    wait_for_hash(page, f"kind={kind}")
    page.locator("main form.plot-form:not([data-stale])").wait_for()
    settled(page)


def mark_stale(page: Page) -> None:
    """Mark what the page shows now: what it draws next has no ``data-stale``."""
    page.evaluate(
        "() => { for (const el of document.querySelectorAll('main *')) el.dataset.stale = ''; }"
    )


def plot(page: Page, **choices: str) -> Locator:
    """Choose the form's fields (select values, or text for inputs), press Plot; the chart."""
    for name, value in choices.items():
        box = page.get_by_label(name, exact=True)
        if box.evaluate("(el) => el.tagName") == "SELECT":
            box.select_option(value)
        else:
            box.fill(value)
    mark_stale(page)
    page.get_by_role("button", name="Plot").click()
    page.locator(FRESH).first.wait_for()
    return page.locator("main figure.chart")


def check_axes(svg: Locator, x_label: str, y_label: str) -> None:
    assert svg.evaluate("(el) => el.namespaceURI") == SVG_NS
    assert svg.locator("line.axis").count() == 2
    assert texts(svg.locator("text.label")) == [x_label, y_label]
    numbers = tick_labels(svg)
    assert len(numbers) >= 4  # at least two ticks on each axis
    for text in numbers:
        float(text)  # every tick label is a number


# --- the compare page -------------------------------------------------------------


def two_runs(collection: Sweep) -> tuple[RunRecord, RunRecord]:
    """Two successful runs of the same width and different learning rates."""
    ok = sorted(
        (r for r in load(collection.root, collection.experiment_id) if r.status == "success"),
        key=lambda r: (r.params["width"], r.params["lr"]),
    )
    first, second = ok[0], ok[1]
    assert first.params["width"] == second.params["width"]
    assert first.params["lr"] != second.params["lr"]
    return first, second


def compare_rows(page: Page) -> dict[str, tuple[list[str], bool]]:
    """The compare table's rows: ``group.key`` -> (the cells' texts, highlighted)."""
    found: dict[str, tuple[list[str], bool]] = {}
    group = ""
    for row in page.locator("main table.compare tr").all()[1:]:
        if "group" in (row.get_attribute("class") or ""):
            group = str(row.text_content()).strip()  # shown in capitals
            continue
        texts = row.locator("td").all_inner_texts()
        found[f"{group}.{texts[0]}"] = (texts[1:], "differ" in (row.get_attribute("class") or ""))
    return found


def test_two_runs_picked_in_the_table_are_compared_side_by_side(
    dashboard: Dashboard, collection: Sweep
) -> None:
    first, second = two_runs(collection)
    dashboard.open(f"#/experiments/{quoted(collection.experiment_id)}")
    page = dashboard.page
    page.locator("main table th.sortable").first.wait_for()
    compare = page.get_by_role("button", name="Compare")
    assert compare.is_disabled()  # nothing picked yet

    for n, run in enumerate((first, second), start=1):
        row = page.locator("main table tr", has=page.locator(f"a[title='{run.run_id}']"))
        row.get_by_role("checkbox").check()
        assert "picked" in str(row.get_attribute("class"))
        page.get_by_text(f"{n} selected").wait_for()
        assert compare.is_disabled() == (n < 2)
    dashboard.screenshot("runs-two-picked")
    compare.click()
    wait_for_hash(page, f"^#/compare\\?ids={first.run_id},{second.run_id}$")
    page.get_by_role("heading", name="Comparing 2 runs").wait_for()
    page.locator("main figure.chart svg path.curve").first.wait_for()
    dashboard.screenshot("compare")

    # One column per run, in the order they were picked.
    heads = page.locator("main table.compare tr").first.locator("th a")
    assert [a.get_attribute("title") for a in heads.all()] == [first.run_id, second.run_id]
    rows = compare_rows(page)
    for group in ("params", "metrics"):
        keys = sorted(set(getattr(first, group)) | set(getattr(second, group)))
        for key in keys:
            a, b = getattr(first, group).get(key), getattr(second, group).get(key)
            texts, highlighted = rows[f"{group}.{key}"]
            assert highlighted == (a != b), key
            if isinstance(a, float) and isinstance(b, float):
                assert texts == [js_number(a), js_number(b)]
    assert rows["params.lr"][1]
    assert not rows["params.width"][1]
    assert not rows["params.optimizer"][1]
    assert rows["run.status"] == (["success", "success"], False)
    # The highlighted rows stand out.
    same = page.locator("main table.compare tr:not(.differ) td").first
    differ = page.locator("main table.compare tr.differ td").last
    background = "(el) => getComputedStyle(el).backgroundColor"
    assert differ.evaluate(background) != same.evaluate(background)

    # The loss of both runs, overlaid in one chart, each in its run's colour.
    chart = page.locator("main figure.chart", has=page.locator("figcaption", has_text="loss"))
    curves = chart.locator("svg path.curve")
    assert curves.count() == 2
    for curve in curves.all():
        assert str(curve.get_attribute("d")).count("L") == collection.steps - 1
    strokes = [c.get_attribute("stroke") for c in curves.all()]
    swatches = page.locator("main table.compare th i.swatch")
    assert strokes == [s.get_attribute("data-color") for s in swatches.all()]
    assert len(set(strokes)) == 2
    assert legend(chart) == [first.run_id[:8], second.run_id[:8]]

    # Only differences: the rows that are equal go.
    page.get_by_label("only differences").check()
    page.locator("main table.compare tr td", has_text="optimizer").wait_for(state="detached")
    dashboard.screenshot("compare-only-differences")
    shown = compare_rows(page)
    assert set(shown) == {key for key, (_, highlighted) in rows.items() if highlighted}
    assert all(highlighted for _, highlighted in shown.values())
    assert "params.lr" in shown
    page.get_by_label("only differences").uncheck()
    page.locator("main table.compare tr td", has_text="optimizer").wait_for()
    assert set(compare_rows(page)) == set(rows)


# --- the plots page ---------------------------------------------------------------


def test_a_scatter_with_a_band_has_a_point_per_group_and_x(
    demo_dashboard: Dashboard, demo: Demo
) -> None:
    runs = load(demo.root, demo.experiment_id)
    page = open_plots(demo_dashboard, demo)
    chart = plot(page, x="params.lr", y="metrics.acc", color="params.width", agg="mean_se")
    wait_for_hash(page, "agg=mean_se")
    chart.locator("svg circle.dot").first.wait_for()
    demo_dashboard.screenshot("plots-scatter")

    # The runs with an accuracy (the failed one has none), one point per width and lr.
    cells: dict[tuple[int, float], list[float]] = defaultdict(list)
    for run in runs:
        if "acc" in run.metrics:
            width, lr = int(str(run.params["width"])), float(str(run.params["lr"]))
            cells[width, lr].append(float(str(run.metrics["acc"])))
    assert len(cells) == len(demo.widths) * len(demo.learning_rates)
    note = page.locator("main p.muted").first.inner_text()
    assert note == f"{demo.runs} runs · {demo.failed} without a value left out"
    svg = chart.locator("svg")
    dots = svg.locator("circle.dot")
    assert dots.count() == len(cells)
    assert svg.locator("line.whisker").count() == len(cells)
    check_axes(svg, "params.lr", "metrics.acc")
    assert legend(chart) == [str(w) for w in sorted(demo.widths)]
    # The groups are coloured apart, each as its swatch in the legend.
    fills = {str(d.get_attribute("fill")) for d in dots.all()}
    swatches = chart.locator(".legend i.swatch").all()
    assert fills == {str(s.get_attribute("data-color")) for s in swatches}
    assert len(fills) == len(demo.widths)

    # Each point is the mean of its replicates, with n and a band of one standard error.
    expected = []
    for (width, lr), values in cells.items():
        n = len(values)
        mean = math.fsum(values) / n
        se = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1) / n)
        expected.append(
            f"{width}\nparams.lr = {js_number(lr)}\nmetrics.acc = {js_number(mean)}\n"
            f"band {js_number(mean - se)} {DASH} {js_number(mean + se)}\nn = {n}"
        )
    assert sorted(titles(dots)) == sorted(expected)
    assert min(len(v) for v in cells.values()) == 2  # the failed run's point


def test_a_histogram_counts_the_runs_in_its_bins(demo_dashboard: Dashboard, demo: Demo) -> None:
    accuracies = [
        float(r.metrics["acc"]) for r in load(demo.root, demo.experiment_id) if "acc" in r.metrics
    ]
    bins = 6
    page = open_plots(demo_dashboard, demo)
    choose_kind(page, "hist")
    chart = plot(page, x="metrics.acc", bins=str(bins))
    chart.locator("svg rect.bar").first.wait_for()
    demo_dashboard.screenshot("plots-histogram")

    low, high = min(accuracies), max(accuracies)
    width = (high - low) / bins
    counts = [0] * bins
    for value in accuracies:
        counts[min(int((value - low) / width), bins - 1)] += 1
    svg = chart.locator("svg")
    bars = svg.locator("rect.bar")
    assert bars.count() == sum(1 for c in counts if c)
    shown = [int(re.findall(r"(\d+) runs$", t)[0]) for t in titles(bars)]
    assert shown == [c for c in counts if c]
    assert sum(shown) == len(accuracies)
    check_axes(svg, "metrics.acc", "runs")
    heights = [float(str(b.get_attribute("height"))) for b in bars.all()]
    tallest = max(range(len(shown)), key=lambda i: shown[i])
    assert max(heights) == heights[tallest]
    assert legend(chart) == []  # one group: no legend


def test_learning_curves_draw_a_path_per_group(demo_dashboard: Dashboard, demo: Demo) -> None:
    runs = load(demo.root, demo.experiment_id)
    page = open_plots(demo_dashboard, demo, kind="curves", metric="loss")
    chart = plot(page, series="loss", color="params.lr", agg="mean_se")
    wait_for_hash(page, "kind=curves.*color=params.lr")
    chart.locator("svg path.curve").first.wait_for()
    demo_dashboard.screenshot("plots-curves")

    svg = chart.locator("svg")
    curves = svg.locator("path.curve")
    assert curves.count() == len(demo.learning_rates)
    assert svg.locator("polygon.band").count() == len(demo.learning_rates)
    for curve in curves.all():
        assert str(curve.get_attribute("d")).count("L") == len(demo.steps) - 1
    assert titles(curves) == [js_number(lr) for lr in sorted(demo.learning_rates)]
    assert legend(chart) == [js_number(lr) for lr in sorted(demo.learning_rates)]
    check_axes(svg, "step", "loss")
    assert len({c.get_attribute("stroke") for c in curves.all()}) == len(demo.learning_rates)

    # Per step, the mean over the group's runs: the failed run stopped half way.
    failed = next(r for r in runs if r.status == "failed")
    group = [r for r in runs if r.params["lr"] == failed.params["lr"]]
    last = f"step = {demo.steps[-1]}"
    ends = [t for t in titles(svg.locator("circle.dot")) if last in t]
    label = js_number(float(str(failed.params["lr"])))
    assert f"{label}\n{last}" in "\n".join(ends)
    mine = next(t for t in ends if t.startswith(f"{label}\n"))
    assert mine.endswith(f"n = {len(group) - 1}")


def test_choosing_learning_curves_draws_a_series_at_once(
    demo_dashboard: Dashboard, demo: Demo
) -> None:
    demo_dashboard.allow(BAD_REQUEST)  # asserted below, as the test's own failure
    page = open_plots(demo_dashboard, demo)
    choose_kind(page, "curves")
    demo_dashboard.screenshot("plots-curves-default")
    assert page.get_by_role("alert").count() == 0, page.get_by_role("alert").inner_text()
    assert page.locator("main figure.chart svg path.curve").count() > 0
    assert not any(re.search(BAD_REQUEST, p) for p in demo_dashboard.problems)


def test_a_plot_filter_that_does_not_parse_shows_the_error(
    demo_dashboard: Dashboard, demo: Demo
) -> None:
    demo_dashboard.allow(BAD_REQUEST)
    page = open_plots(demo_dashboard, demo)
    page.get_by_label("filter").fill("params.width >")
    page.get_by_role("button", name="Plot").click()
    wait_for_hash(page, "where=")
    alert = page.get_by_role("alert")
    alert.wait_for()
    demo_dashboard.screenshot("plots-bad-filter")

    assert "column" in alert.inner_text()
    caret = page.locator(".caret").inner_text().splitlines()
    assert caret[0] == "params.width >"
    assert caret[1].strip() == "^"
    assert page.locator("main figure.chart").count() == 0
    assert page.get_by_label("filter").input_value() == "params.width >"
    assert any(re.search(BAD_REQUEST, p) for p in demo_dashboard.problems)

    # Corrected, it plots the runs it keeps.
    chart = plot(page, filter="params.width > 64")
    chart.locator("svg circle.dot").first.wait_for()
    kept = [r for r in load(demo.root, demo.experiment_id) if int(str(r.params["width"])) > 64]
    assert page.locator("main p.muted").first.inner_text().startswith(f"{len(kept)} runs")


def test_every_page_of_the_demo_has_a_screenshot(demo_dashboard: Dashboard, demo: Demo) -> None:
    """The pages the docs show, without errors: the runs table and a run."""
    demo_dashboard.open(f"#/experiments/{quoted(demo.experiment_id)}")
    page = demo_dashboard.page
    page.locator("main table th.sortable").first.wait_for()
    demo_dashboard.screenshot("demo-runs")
    assert page.get_by_text(f"1{DASH}{demo.runs} of {demo.runs}").count() == 1
    failed = next(r for r in load(demo.root, demo.experiment_id) if r.status == "failed")
    demo_dashboard.open(f"#/runs/{failed.run_id}")
    page.get_by_role("heading", name="Error").wait_for()
    page.locator("main figure.chart svg path.curve").first.wait_for()
    demo_dashboard.screenshot("demo-failed-run")
    chart = page.locator("main figure.chart", has=page.locator("figcaption", has_text="loss"))
    done = [s for s in demo.steps if s < 100]
    assert f"{len(done)} points" in chart.locator("figcaption").inner_text()


# --- the charts' axes -------------------------------------------------------------


def overlap(a: FloatRect, b: FloatRect) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


def test_the_y_axis_name_clears_the_tick_labels(demo_dashboard: Dashboard, demo: Demo) -> None:
    # The demo's accuracies (seeded, so always the same) put a tick near the top.
    page = open_plots(demo_dashboard, demo)
    chart = plot(page, x="params.lr", y="metrics.acc", color="params.width", agg="mean_se")
    svg = chart.locator("svg")
    svg.locator("circle.dot").first.wait_for()
    demo_dashboard.screenshot("plots-axis-names")
    name = svg.locator("text.label").last  # the y axis's
    assert name.text_content() == "metrics.acc"
    box = name.bounding_box()
    assert box is not None
    ticks = [t.bounding_box() for t in svg.locator("text:not(.label)").all()]
    hit = [t for t in ticks if t is not None and overlap(box, t)]
    assert not hit, f"the y axis's name {box} overlaps the tick labels at {hit}"
