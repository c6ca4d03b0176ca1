"""Context specs: the start-up cost of a sweep whose context names datasets by content.

A spec with a ``DirPath`` of ``n`` small files (1 KiB each) and a ``FilePath`` to one
sparse file of ``n`` x 200 KiB (2 GB at n = 10,000) is fingerprinted as ``run()`` does
when a sweep starts: ``context.first`` with an empty hash cache (every byte read),
``context.again`` with the cache a first sweep left (nothing read), against the bare
``os.stat`` of the same files (what the cache lookup cannot avoid).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import metalab
from benchmarks._harness import Measurement, Report, time_interleaved
from metalab._identity import fingerprint, to_json

_BARE = "bare os.stat of the files"


@metalab.context_spec
class _Spec:
    files: metalab.DirPath
    big: metalab.FilePath


def run(report: Report, *, n: int, repeat: int) -> None:
    """Time fingerprinting a spec over ``n`` small files and one large sparse file."""
    tmp = Path(tempfile.mkdtemp(prefix="metalab-bench-context-"))
    saved = os.environ.get("METALAB_CACHE_DIR")
    try:
        files = tmp / "files"
        files.mkdir()
        for i in range(n):
            (files / f"{i:06d}.bin").write_bytes(os.urandom(1024))
        big = tmp / "big.bin"
        with big.open("wb") as stream:
            stream.truncate(n * 200 * 1024)
        paths = [*files.iterdir(), big]
        caches = iter(range(1_000_000))

        def first() -> str:
            os.environ["METALAB_CACHE_DIR"] = str(tmp / f"cache-{next(caches)}")
            return fingerprint(to_json(_Spec(metalab.DirPath(files), metalab.FilePath(big))))

        def again() -> str:
            os.environ["METALAB_CACHE_DIR"] = str(tmp / "cache-warm")
            return fingerprint(to_json(_Spec(metalab.DirPath(files), metalab.FilePath(big))))

        def bare() -> None:
            for path in paths:
                path.stat()

        again()  # fills the warm cache
        timings = time_interleaved({_BARE: bare, "first": first, "again": again}, repeat=repeat)
        size = f"{n:,} files of 1 KiB and one sparse file of {n * 200 / 1024:,.0f} MiB"
        report.add(Measurement("context.start", _BARE, n, timings[_BARE]))
        report.add(
            Measurement("context.start", "metalab, empty cache", n, timings["first"], _BARE, size)
        )
        report.add(
            Measurement(
                "context.start", "metalab, cache of a first sweep", n, timings["again"], _BARE, size
            )
        )
    finally:
        if saved is None:
            os.environ.pop("METALAB_CACHE_DIR", None)
        else:
            os.environ["METALAB_CACHE_DIR"] = saved
        shutil.rmtree(tmp, ignore_errors=True)
