"""The rules of run edits: how tags and notes edits accumulate and survive later writes."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest

from metalab import _codec
from metalab.errors import ConfigError
from metalab.records import RunEdits, RunRecord
from metalab.store._rules import edit, keep_edits

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _record(tags: tuple[str, ...] = ("exp",), notes: str | None = None) -> RunRecord:
    return msgspec.structs.replace(
        RunRecord.running(run_id="ab" * 32, experiment_id="e:1", started_at=T0, tags=tags),
        notes=notes,
    )


class TestEdit:
    def test_edits_accumulate_and_a_tag_readded_leaves_the_removed_list(self) -> None:
        first = edit(_record(), add=["a", "b"], remove=["exp"])
        assert first.tags == ("a", "b")
        assert first.edits is not None
        assert (first.edits.tags_added, first.edits.tags_removed) == (("a", "b"), ("exp",))
        second = edit(first, add=["exp"], remove=["a"])
        assert second.tags == ("b", "exp")
        assert second.edits is not None
        assert (second.edits.tags_added, second.edits.tags_removed) == (("b", "exp"), ("a",))
        assert second.edits.edited_at >= first.edits.edited_at

    def test_notes_are_set_kept_and_cleared(self) -> None:
        noted = edit(_record(notes="from capture"), notes="by hand")
        assert noted.notes == "by hand"
        tagged = edit(noted, add=["x"])
        assert tagged.notes == "by hand"  # a tag edit keeps the notes edit
        cleared = edit(tagged, clear_notes=True)
        assert cleared.notes is None
        assert cleared.edits is not None
        assert cleared.edits.notes == ""

    @pytest.mark.parametrize(
        ("add", "remove", "message"),
        [([""], [], "non-empty string"), ([], [None], "non-empty string"), (["a"], ["a"], "both")],
    )
    def test_bad_edits_are_refused(
        self, add: list[object], remove: list[object], message: str
    ) -> None:
        with pytest.raises(ConfigError, match=message):
            edit(_record(), add=add, remove=remove)  # type: ignore[arg-type]


class TestKeepEdits:
    def test_nothing_to_keep(self) -> None:
        incoming = _record()
        assert keep_edits(incoming, None) is incoming
        assert keep_edits(incoming, _record(tags=("other",))) is incoming

    def test_a_write_built_without_the_edits_gets_them(self) -> None:
        stored = edit(_record(), add=["kept"], remove=["exp"], notes="noted")
        final = _record(tags=("exp", "captured")).succeeded(metrics={"m": 1})
        kept = keep_edits(final, stored)
        assert kept.status == "success"
        assert kept.metrics == {"m": 1}
        assert (kept.tags, kept.notes, kept.edits) == (("captured", "kept"), "noted", stored.edits)

    def test_the_later_edits_win(self) -> None:
        older = edit(_record(), add=["old"])
        newer = edit(_record(), add=["new"])
        assert keep_edits(newer, older) is newer  # a record read, edited and put back
        kept = keep_edits(older, newer)  # a late write of an older copy
        assert kept.tags == ("exp", "old", "new")
        assert kept.edits == newer.edits

    def test_equal_edits_keep_the_incoming_record(self) -> None:
        stored = edit(_record(), add=["x"])
        assert keep_edits(stored, stored) is stored

    def test_edits_round_trip_through_the_codec(self) -> None:
        record = edit(_record(), add=["a"], notes="n")
        assert _codec.RUN_RECORD.decode(_codec.RUN_RECORD.encode(record)) == record
        plain = _record()
        assert b'"edits"' not in _codec.RUN_RECORD.encode(plain)  # no edits: as before
        assert isinstance(record.edits, RunEdits)
