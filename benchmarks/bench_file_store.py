"""FileStore: write, scan and get by id, next to the physical anchors of the same work.

Every operation is measured together with what the filesystem alone costs for the
same bytes, alternating the subjects in every repeat so that they share the machine's
drift:

- write: ``put_run_record`` of ``n`` workload records into a fresh store, vs a bare
  temp-file write + ``os.replace`` of the same encoded bytes (and ``put_run_records``);
- durable write: the same with fsync of file and directory, vs a bare fsync'd write
  (temp file, fsync, ``os.replace``, fsync of the directory); fsync is slow, so this
  uses at most 2,000 records;
- scan: ``list_run_records`` of the whole experiment, vs a bare read of every file
  (list the directory, open/read/close) and vs reading then decoding in one thread;
- get: 10,000 random ``get_run_record`` (or ``n`` if fewer), vs a bare read of the
  same files.

Files are read from the page cache (warm), as right after a sweep.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks import _workload
from benchmarks._anchors import bare_read, bare_read_dirs
from benchmarks._harness import Measurement, Report, time_interleaved, time_repeats
from metalab import _codec
from metalab.records import RunRecord
from metalab.store._file import FileStoreConfig

DURABLE_MAX = 2_000
GETS = 10_000

BARE_WRITE = "bare tmp write + os.replace"
BARE_FSYNC = "bare fsync'd write (+ dir fsync)"
BARE_READ = "bare read (open/read/close)"
STORE = "FileStore"

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _bare_write(directory: Path, names: list[str], blobs: list[bytes], *, durable: bool) -> None:
    runs = str(directory)
    for name, data in zip(names, blobs, strict=True):
        tmp = f"{runs}/.{os.urandom(16).hex()}.partial"
        fd = os.open(tmp, _FLAGS, 0o666)
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, f"{runs}/{name}")  # noqa: PTH105 - the anchor is the bare syscall
        if durable:
            dfd = os.open(runs, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def _decode_sequential(directory: str) -> list[RunRecord]:
    with os.scandir(directory) as entries:
        names = [e.name for e in entries if e.name.endswith(".json")]
    decode = _codec.RUN_RECORD.decode
    out = []
    for name in names:
        path = f"{directory}/{name}"
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        out.append(decode(data, source=path))
    return out


class _Fresh:
    """A fresh empty directory per repeat; the previous one is removed untimed."""

    def __init__(self, base: Path, name: str) -> None:
        self.base = base
        self.name = name
        self.current = base / name
        self.count = 0

    def reset(self) -> None:
        shutil.rmtree(self.current, ignore_errors=True)
        self.count += 1
        self.current = self.base / f"{self.name}-{self.count}"
        self.current.mkdir()


def _interleaved_with_setup(
    subjects: dict[str, tuple[Callable[[], object], Callable[[], object]]], repeat: int
) -> dict[str, tuple[float, ...]]:
    """Like ``time_interleaved``, with an untimed setup before every timed call."""
    timings: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(repeat):
        for name, (fn, setup) in subjects.items():
            timings[name].extend(time_repeats(fn, repeat=1, setup=setup))
    return {name: tuple(values) for name, values in timings.items()}


def _write_suite(
    report: Report, base: Path, records: list[RunRecord], repeat: int, *, durable: bool
) -> None:
    n = len(records)
    names = [f"{r.run_id}.json" for r in records]
    blobs = [_codec.RUN_RECORD.encode(r) for r in records]
    anchor_dir = _Fresh(base, f"anchor-{durable}")
    one_dir = _Fresh(base, f"one-{durable}")
    bulk_dir = _Fresh(base, f"bulk-{durable}")
    eid = _workload.EXPERIMENT_ID

    def put_one() -> None:
        with FileStoreConfig(
            root=str(one_dir.current), experiment_id=eid, durable=durable
        ).connect() as store:
            for rec in records:
                store.put_run_record(rec)

    def put_bulk() -> None:
        with FileStoreConfig(
            root=str(bulk_dir.current), experiment_id=eid, durable=durable
        ).connect() as store:
            store.put_run_records(records)

    anchor = BARE_FSYNC if durable else BARE_WRITE
    timings = _interleaved_with_setup(
        {
            anchor: (
                lambda: _bare_write(anchor_dir.current, names, blobs, durable=durable),
                anchor_dir.reset,
            ),
            f"{STORE}.put_run_record": (put_one, one_dir.reset),
            f"{STORE}.put_run_records": (put_bulk, bulk_dir.reset),
        },
        repeat,
    )
    operation = "file.write (durable)" if durable else "file.write"
    note = f"durable runs use min(N, {DURABLE_MAX:,}) records" if durable else ""
    report.add(Measurement(operation, anchor, n, timings[anchor], notes=note))
    for subject in (f"{STORE}.put_run_record", f"{STORE}.put_run_records"):
        report.add(Measurement(operation, subject, n, timings[subject], anchor, note))
    for fresh in (anchor_dir, one_dir, bulk_dir):
        shutil.rmtree(fresh.current, ignore_errors=True)


def run(report: Report, *, n: int, repeat: int) -> None:
    """Measure FileStore write, durable write, scan and get by id for ``n`` records."""
    records = list(_workload.records(n))
    with tempfile.TemporaryDirectory(prefix="metalab-bench-") as tmp:
        base = Path(tmp)
        _write_suite(report, base, records, repeat, durable=False)
        _write_suite(report, base, records[:DURABLE_MAX], repeat, durable=True)

        config = FileStoreConfig(root=str(base / "scan"), experiment_id=_workload.EXPERIMENT_ID)
        with config.connect() as store:
            store.put_run_records(records)
            runs = str(store.layout.runs_dir)
            decode_bytes = [_codec.RUN_RECORD.encode(r) for r in records]
            decode = _codec.RUN_RECORD.decode
            timings = time_interleaved(
                {
                    BARE_READ: lambda: bare_read_dirs(runs),
                    "codec decode only (bytes in memory)": lambda: [
                        decode(b) for b in decode_bytes
                    ],
                    "read + decode, one thread": lambda: _decode_sequential(runs),
                    f"{STORE}.list_run_records": lambda: store.list_run_records(
                        _workload.EXPERIMENT_ID
                    ),
                },
                repeat=repeat,
            )
            for subject, seconds in timings.items():
                baseline = None if subject == BARE_READ else BARE_READ
                report.add(Measurement("file.scan", subject, n, seconds, baseline))

            k = min(GETS, n)
            ids = random.Random(42).choices([r.run_id for r in records], k=k)
            paths = [f"{runs}/{rid}.json" for rid in ids]
            get = store.get_run_record
            timings = time_interleaved(
                {
                    BARE_READ: lambda: bare_read(paths),
                    f"{STORE}.get_run_record": lambda: [get(rid) for rid in ids],
                },
                repeat=repeat,
            )
            report.add(Measurement("file.get", BARE_READ, k, timings[BARE_READ]))
            report.add(
                Measurement(
                    "file.get",
                    f"{STORE}.get_run_record",
                    k,
                    timings[f"{STORE}.get_run_record"],
                    BARE_READ,
                    f"store of {n:,} records",
                )
            )
