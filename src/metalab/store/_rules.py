"""The rules of the store contract, each written once and called by every backend.

- **Which record wins.** A record never moves backwards: a ``running`` record never
  replaces a finished one (``success``, ``failed``, ``cancelled``); every other put
  replaces the stored record, so between two finished records the later put wins.
  Several puts of one run in one batch leave what putting them one by one would.
  The Postgres index states the same rule in SQL; the SQL text sits here beside its
  Python twin (:data:`SQL_REPLACES`, :data:`SQL_BATCH_ORDER`) and a property test holds
  the two equal on generated records.
- **Scope.** A store bound to one experiment accepts only that experiment's
  documents (:func:`check_scope`).
- **A document holds the run it is filed under** (:func:`check_filed_under`).
- **Which ids and names may become part of a path or a key** (:func:`validate_run_id`,
  :func:`validate_name`, :func:`validate_format`, :func:`validate_experiment_id`),
  checked before any filesystem call or query.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Final, get_args

import msgspec

from metalab.errors import ConfigError, CorruptRecordError, ExperimentMismatchError
from metalab.records import RunEdits, RunRecord, Status, utc_now

__all__ = [
    "MAX_EXPERIMENT_ID_LENGTH",
    "REFUSABLE",
    "SQL_BATCH_ORDER",
    "SQL_KEEPS_EDITS",
    "SQL_REPLACES",
    "STATUSES",
    "batch_winner",
    "check_filed_under",
    "check_scope",
    "completes",
    "edit",
    "keep_edits",
    "keeps_edits",
    "may_be_refused",
    "must_read_stored",
    "notes_change",
    "replaces",
    "tags_change",
    "to_place",
    "validate_experiment_id",
    "validate_format",
    "validate_name",
    "validate_run_id",
]

STATUSES: Final[tuple[Status, ...]] = get_args(Status)


def replaces(new: str, stored: str) -> bool:
    """Whether putting a record with status ``new`` replaces one stored with ``stored``.

    True unless ``new`` is ``running`` and ``stored`` is finished: a record never moves
    backwards, and otherwise the later put wins. The same expression as
    :data:`SQL_REPLACES`.
    """
    return stored == "running" or new != "running"


SQL_REPLACES: Final = "({stored}.status = 'running' OR {new}.status <> 'running')"
""":func:`replaces` in SQL; ``{stored}`` and ``{new}`` are the two rows' aliases."""


def keeps_edits(new: dt.datetime | None, stored: dt.datetime | None) -> bool:
    """Whether an index may replace a row edited at ``stored`` by a document edited at ``new``.

    A record file always carries the latest edits (:func:`keep_edits`), so a document
    whose edits are older than the indexed row's (or which has none) was written
    before an edit that the index already took: it would drop the edit from the
    index. ``None`` is a run never edited. The same expression as
    :data:`SQL_KEEPS_EDITS`.
    """
    return stored is None or (new is not None and new >= stored)


SQL_KEEPS_EDITS: Final = "({stored}.edited_at IS NULL OR {new}.edited_at >= {stored}.edited_at)"
""":func:`keeps_edits` in SQL (a ``NULL`` ``{new}.edited_at`` compares as unknown: refused)."""

REFUSABLE: Final = frozenset(new for new in STATUSES if not all(replaces(new, s) for s in STATUSES))


def may_be_refused(new: str) -> bool:
    """Whether some stored record would keep its place against a put of status ``new``.

    A store must read what it holds before placing such a record; any other record
    replaces whatever is there without a look.
    """
    return new in REFUSABLE


def batch_winner(statuses: Sequence[str]) -> int:
    """The position of the record that puts of one run, made in this order, leave stored.

    Putting them one by one with :func:`replaces` leaves the last finished one, or
    the last one if none is finished; the index merges a batch with the same order
    (:data:`SQL_BATCH_ORDER`).

    Raises:
        ValueError: ``statuses`` is empty.
    """
    if not statuses:
        raise ValueError("a batch of puts of one run is never empty")
    return max(range(len(statuses)), key=lambda i: (statuses[i] != "running", i))


SQL_BATCH_ORDER: Final = "(status <> 'running') DESC, ordinal DESC"
""":func:`batch_winner` in SQL: the first row in this order wins (``ordinal``: put order)."""


def completes(stored: str, new: str) -> bool:
    """Whether ``new`` finishes a run that is stored as still ``running``.

    Copying between stores replaces a differing record only then (or when asked to):
    the destination holds an earlier state of the same run.
    """
    return stored == "running" and new != "running"


def check_scope(scope: str | None, experiment_id: str, where: str) -> None:
    """Refuse a document of ``experiment_id`` in a store bound to ``scope``.

    Args:
        scope: The experiment the store is bound to, or ``None`` (it takes any).
        experiment_id: The experiment of the document being put.
        where: The store's place, for the message.

    Raises:
        ExperimentMismatchError: The store is bound to another experiment.
    """
    if scope is not None and experiment_id != scope:
        raise ExperimentMismatchError(where, experiment_id, scope)


def check_filed_under(found: str, run_id: str, where: str) -> None:
    """Refuse a document that holds another run than the one it is filed under.

    Raises:
        CorruptRecordError: ``found`` (the run id inside) is not ``run_id``.
    """
    if found != run_id:
        raise CorruptRecordError(where, f"the document holds run {found!r}")


MAX_EXPERIMENT_ID_LENGTH: Final = 200

# Run ids have no '_': a log file is ``{run_id}_{name}.log``, and the first '_' must
# tell where the run id ends, or deleting run "a" would take the logs of run "a_b".
_RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,127}")
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

_RUN_ID_RULE: Final = "1 to 128 letters, digits, '.' or '-', starting with a letter or digit"
_NAME_RULE: Final = (
    "1 to 128 letters, digits, '_', '.' or '-', starting with a letter or digit "
    "(names starting with '_' or '.' are reserved)"
)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...{text[-12:]} ({len(text)} chars)"


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can be a file name, else raise.

    Raises:
        ConfigError: The id is not a string or does not match the allowed characters.
    """
    value: object = run_id
    if not isinstance(value, str) or _RUN_ID.fullmatch(value) is None:
        raise ConfigError(f"invalid run id {_shown(value)}: a run id must be {_RUN_ID_RULE}")
    return run_id


def validate_name(name: str, what: str = "name") -> str:
    """Return an artifact, log, result or store ``name`` if it is one safe path component.

    Args:
        name: The name to check.
        what: What the name is, for the message (``"artifact name"``).

    Raises:
        ConfigError: The name is not a string or does not match the allowed characters.
    """
    value: object = name
    if not isinstance(value, str) or _NAME.fullmatch(value) is None:
        raise ConfigError(f"invalid {what} {_shown(value)}: it must be {_NAME_RULE}")
    return name


def validate_format(fmt: str) -> str:
    """Return an artifact format (the file extension) if it is safe in a file name.

    Raises:
        ConfigError: The format does not match the allowed characters.
    """
    return validate_name(fmt, "artifact format")


def validate_experiment_id(experiment_id: str) -> str:
    """Return ``experiment_id`` if a store can keep it, else raise.

    Raises:
        ConfigError: The id is not a string, is empty, ``.`` or ``..``, holds a path
            separator, NUL or another control character, is longer than 200
            characters, or is not in Unicode NFC form (one name, one spelling).
    """
    value: object = experiment_id
    if not isinstance(value, str):
        raise ConfigError(f"experiment id must be a string, got {type(value).__name__}")
    problem = None
    if not experiment_id:
        problem = "it is empty"
    elif len(experiment_id) > MAX_EXPERIMENT_ID_LENGTH:
        problem = f"it is longer than {MAX_EXPERIMENT_ID_LENGTH} characters"
    elif "/" in experiment_id or "\\" in experiment_id:
        problem = "it contains a path separator ('/' or '\\\\')"
    elif _CONTROL.search(experiment_id):
        problem = "it contains NUL or another control character"
    elif experiment_id in (".", ".."):
        problem = "it names the current or parent directory"
    elif not unicodedata.is_normalized("NFC", experiment_id):
        # Two spellings of one name would be two directories with the same run ids.
        problem = (
            "it is not in Unicode NFC form (write it as "
            f"unicodedata.normalize('NFC', ...): {unicodedata.normalize('NFC', experiment_id)!r})"
        )
    if problem is not None:
        raise ConfigError(
            f"invalid experiment id {_shown(experiment_id)}: {problem}; "
            "use a name like 'my_exp:1.0' (not '.' or '..', no '/', '\\\\' or control "
            f"characters, at most {MAX_EXPERIMENT_ID_LENGTH} characters)"
        )
    return experiment_id


def _with_edits(record: RunRecord, edits: RunEdits) -> RunRecord:
    """``record`` with the tags and notes that ``edits`` make, and the edits kept."""
    removed = set(edits.tags_removed)
    tags = [t for t in record.tags if t not in removed]
    tags += [t for t in edits.tags_added if t not in tags]
    notes = record.notes if edits.notes is None else (edits.notes or None)
    return msgspec.structs.replace(record, tags=tuple(tags), notes=notes, edits=edits)


_EDITS_KEY: Final = b'"edits":'


def must_read_stored(status: str, stored: bytes) -> bool:
    """Whether a put of a record with ``status`` must decode the stored one first.

    It must when the stored record may refuse it (:func:`may_be_refused`) or carries
    edits the new one keeps (:func:`keep_edits`); a record's bytes hold ``"edits":``
    then (a param of that name only costs a decode).
    """
    return status in REFUSABLE or _EDITS_KEY in stored


def to_place(incoming: RunRecord, stored: RunRecord) -> RunRecord | None:
    """What a put of ``incoming`` places over ``stored``; ``None`` when ``stored`` stays.

    A record never moves backwards (:func:`replaces`), and a record that replaces
    another keeps the edits made to it (:func:`keep_edits`).
    """
    if not replaces(incoming.status, stored.status):
        return None
    return keep_edits(incoming, stored)


def tags_change(add: Sequence[str], remove: Sequence[str]) -> Callable[[RunRecord], RunRecord]:
    """The change ``set_tags`` makes to a stored record (see :func:`edit`)."""
    return functools.partial(edit, add=add, remove=remove)


def notes_change(text: str | None) -> Callable[[RunRecord], RunRecord]:
    """The change ``set_notes`` makes to a stored record (``None`` clears the notes)."""
    return functools.partial(edit, notes=text, clear_notes=text is None)


def keep_edits(incoming: RunRecord, stored: RunRecord | None) -> RunRecord:
    """The record to store when ``incoming`` replaces ``stored``: with its edits kept.

    The runner builds a run's records from the experiment, not from what is stored,
    so a status write would drop tags and notes people set meanwhile. The later
    edits win: those ``stored`` carries, unless ``incoming`` carries edits as late
    (a record read, edited and put back, or copied by an export).
    """
    if stored is None or stored.edits is None:
        return incoming
    if incoming.edits is not None and incoming.edits.edited_at >= stored.edits.edited_at:
        return incoming
    return _with_edits(incoming, stored.edits)


def edit(
    stored: RunRecord,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
    notes: str | None = None,
    clear_notes: bool = False,
) -> RunRecord:
    """``stored`` with tags added and removed and notes set, the edits recorded.

    A tag both added and removed is refused; tags are added in the order given.

    Raises:
        ConfigError: A tag is not a non-empty string, or is both added and removed.
    """
    for tag in (*add, *remove):
        given: object = tag  # typed str, but callers are not always typed
        if not isinstance(given, str) or not given:
            raise ConfigError(f"a tag must be a non-empty string, got {tag!r}")
    both = sorted(set(add) & set(remove))
    if both:
        raise ConfigError(f"tags {both} are both added and removed")
    before = stored.edits or RunEdits(edited_at=utc_now())
    added = [t for t in before.tags_added if t not in remove]
    added += [t for t in dict.fromkeys(add) if t not in added]
    removed = [t for t in before.tags_removed if t not in add]
    removed += [t for t in dict.fromkeys(remove) if t not in removed]
    edits = RunEdits(
        tags_added=tuple(added),
        tags_removed=tuple(removed),
        notes="" if clear_notes else (before.notes if notes is None else notes),
        edited_at=utc_now(),
    )
    return _with_edits(stored, edits)
