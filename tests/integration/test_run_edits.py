"""Tags and notes set after a run was recorded: the CLI, Run helpers, processes, the index."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab.errors import CapabilityError, ConfigError
from metalab.query import build_query
from metalab.results import Results
from metalab.store import FileStoreConfig, MemoryStoreConfig, PostgresStoreConfig
from metalab.testing import run_cli
from metalab.testing.store import make_record

EXP = "edits:1"


@metalab.operation
def _op(params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("i", params["i"])


_EXPERIMENT = metalab.Experiment(
    name="edits", version="1", operation=_op, params=metalab.grid(i=[1, 2]), tags=("exp",)
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    metalab.run(_EXPERIMENT, store=tmp_path / "store", progress=False).result()
    return tmp_path / "store"


def _ids(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "edits_1" / "runs").glob("*.json"))


class TestCli:
    def test_tag_adds_and_removes_and_queries_see_it(self, root: Path) -> None:
        run_id = _ids(root)[0]
        tagged = run_cli("runs", "tag", str(root), run_id[:8], "+baseline", "-exp", "--json")
        assert tagged.returncode == 0, tagged.stderr
        assert json.loads(tagged.stdout) == {"run_id": run_id, "tags": ["baseline"]}
        listed = run_cli("runs", "ls", str(root), "--where", 'tags contains "baseline"', "--json")
        assert [row["run_id"] for row in json.loads(listed.stdout)] == [run_id]
        plain = run_cli("runs", "tag", str(root), run_id[:8], "+gpu")
        assert plain.stdout == f"{run_id[:12]}  tags: baseline, gpu\n"

    def test_note_sets_and_clears(self, root: Path) -> None:
        run_id = _ids(root)[1]
        noted = run_cli("runs", "note", str(root), run_id[:8], "diverged after the lr drop")
        assert noted.returncode == 0, noted.stderr
        assert noted.stdout == f"{run_id[:12]}  notes: diverged after the lr drop\n"
        shown = run_cli("runs", "show", str(root), run_id[:8], "--json")
        assert json.loads(shown.stdout)["notes"] == "diverged after the lr drop"
        cleared = run_cli("runs", "note", str(root), run_id[:8], "--clear", "--json")
        assert json.loads(cleared.stdout) == {"run_id": run_id, "notes": None}

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["runs", "tag", "{root}", "{run}", "baseline"], "'baseline' is not +LABEL or -LABEL"),
            (["runs", "tag", "{root}", "{run}", "+"], "'+' is not +LABEL or -LABEL"),
            (["runs", "tag", "{root}", "{run}", "+x", "-x"], "both added and removed"),
            (["runs", "tag", "{root}", "ffffffff", "+x"], "no run id starts with 'ffffffff'"),
            (["runs", "note", "{root}", "{run}"], "one of the arguments text --clear"),
        ],
    )
    def test_bad_edits_are_one_line_errors_and_change_nothing(
        self, root: Path, args: list[str], message: str
    ) -> None:
        run_id = _ids(root)[0]
        before = (root / "edits_1" / "runs" / f"{run_id}.json").read_bytes()
        result = run_cli(*(a.format(root=root, run=run_id[:8]) for a in args))
        assert result.returncode in (1, 2)
        assert message in result.stderr
        assert result.stdout == ""
        assert (root / "edits_1" / "runs" / f"{run_id}.json").read_bytes() == before

    def test_a_store_that_cannot_edit_is_named(self) -> None:
        result = run_cli("runs", "tag", "memory://", "abc", "+x")
        assert result.returncode in (1, 2)
        assert result.stderr.startswith("metalab: error: ")


class TestLibrary:
    def test_run_and_results_helpers(self, root: Path) -> None:
        results = metalab.load_results(root, EXP)
        run = results[0].set_tags(add=["baseline"]).set_notes("first look")
        assert (run.tags, run.notes) == (("exp", "baseline"), "first look")
        everything = results.set_tags(add=["reviewed"], remove=["exp"])
        assert [r.tags for r in everything] == [("baseline", "reviewed"), ("reviewed",)]
        again = metalab.load_results(root, EXP)
        assert [r.tags for r in again] == [("baseline", "reviewed"), ("reviewed",)]
        assert again[0].notes == "first look"

    def test_a_store_without_edits_is_named(self) -> None:
        class NoEdits:
            pass

        results = Results([make_record(EXP)], NoEdits())  # type: ignore[arg-type]
        with pytest.raises(CapabilityError, match="SupportsRunEdits"):
            results[0].set_tags(add=["x"])

    def test_bad_tags_are_refused(self) -> None:
        store = MemoryStoreConfig(experiment_id=EXP).connect()
        record = make_record(EXP)
        store.put_run_record(record)
        with pytest.raises(ConfigError, match="both added and removed"):
            store.set_tags(record.run_id, add=["a"], remove=["a"])


_TAGGER = textwrap.dedent(
    """
    import sys
    from metalab.store import FileStoreConfig

    root, run_id, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
    with FileStoreConfig(root=root, experiment_id="edits:1").connect() as store:
        for i in range(30):
            store.set_tags(run_id, add=[f"{prefix}{i}"])
    """
)


def test_two_processes_tagging_one_run_both_land(root: Path, tmp_path: Path) -> None:
    script = tmp_path / "tagger.py"
    script.write_text(_TAGGER)
    run_id = _ids(root)[0]
    procs = [
        subprocess.Popen([sys.executable, str(script), str(root), run_id, prefix])
        for prefix in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with FileStoreConfig(root=str(root), experiment_id=EXP).connect() as store:
        record = store.get_run_record(run_id)
    assert record is not None
    assert len(record.tags) == 61  # "exp" and 30 of each
    assert {f"a{i}" for i in range(30)} | {f"b{i}" for i in range(30)} <= set(record.tags)


_SLOW_SWEEP = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import metalab

    root, started, release = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    @metalab.operation
    def wait(params, capture):
        started.touch()
        while not release.exists():
            time.sleep(0.01)
        capture.tag("from-capture")

    exp = metalab.Experiment(
        name="edits", version="1", operation=wait, params=metalab.grid(i=[1]), tags=("exp",)
    )
    metalab.run(exp, store=root, progress=False).result()
    """
)


def test_a_run_tagged_while_it_goes_keeps_the_tags_when_it_ends(tmp_path: Path) -> None:
    script, root = tmp_path / "sweep.py", tmp_path / "store"
    started, release = tmp_path / "started", tmp_path / "release"
    script.write_text(_SLOW_SWEEP)
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(started), str(release)])
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.01)
    (run_id,) = _ids(root)
    assert run_cli("runs", "tag", str(root), run_id[:8], "+watched", "-exp").returncode == 0
    assert run_cli("runs", "note", str(root), run_id[:8], "looked at it").returncode == 0
    release.touch()
    assert proc.wait(timeout=60) == 0
    run = metalab.load_results(root, EXP)[0]
    assert run.status == "success"
    assert run.tags == ("from-capture", "watched")  # "exp" stays removed
    assert run.notes == "looked at it"


def test_the_index_sees_edits_made_through_it_or_synced_from_the_files(
    postgres_config: PostgresStoreConfig,
) -> None:
    results = metalab.run(_EXPERIMENT, store=postgres_config, progress=False).result()
    first, second = results.run_ids
    with postgres_config.scoped(EXP).connect() as store:
        store.set_tags(first, add=["indexed"])
        found = store.query_runs(build_query('tags contains "indexed"'))
        assert [r.run_id for r in found] == [first]
    # An edit through the files alone reaches the index with the next sync.
    with FileStoreConfig(root=postgres_config.file_root, experiment_id=EXP).connect() as files:
        files.set_tags(second, add=["indexed"])
    with postgres_config.scoped(EXP).connect() as store:
        store.sync_index()
        found = store.query_runs(build_query('tags contains "indexed"'))
        assert sorted(r.run_id for r in found) == sorted([first, second])


def test_a_status_write_indexed_after_an_edit_does_not_drop_it_from_the_index(
    postgres_config: PostgresStoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner's write reaches the files, then a person's edit lands (files and
    index), then the runner's index write arrives with the document it wrote before
    the edit: the index must keep the edit, as the files do."""
    running = make_record(EXP)
    with (
        postgres_config.scoped(EXP).connect() as runner,
        postgres_config.scoped(EXP).connect() as person,
    ):
        runner.put_run_record(running)
        real_write = runner.index.write

        def edit_then_write(*args: Any, **kwargs: Any) -> None:
            person.set_tags(running.run_id, add=["watched"])
            real_write(*args, **kwargs)

        monkeypatch.setattr(runner.index, "write", edit_then_write)
        runner.put_run_record(running.succeeded(metrics={"i": 1}))
        monkeypatch.undo()
        on_disk = runner.files.get_run_record(running.run_id)
        assert on_disk is not None
        assert on_disk.status == "success"
        assert "watched" in on_disk.tags
        assert runner.get_run_record(running.run_id) == on_disk
        found = runner.query_runs(build_query('tags contains "watched"'))
        assert [r.run_id for r in found] == [running.run_id]
