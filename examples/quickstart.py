"""Write run records as metalab stores them, read them back and print a table.

Run with ``python examples/quickstart.py [DIRECTORY]``. The runner (``metalab.run``)
will take this example's place once it lands; until then this shows the record type
and the versioned codec every store uses.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

from metalab import _codec
from metalab.records import RunRecord


def main(directory: Path) -> None:
    runs = directory / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    for i, scale in enumerate([0.1, 1.0, 10.0]):
        rng = random.Random(123 + i)
        record = RunRecord.running(
            run_id=f"{i:064x}", experiment_id="mvp:0.1", params={"scale": scale}
        ).succeeded(metrics={"score": rng.random() * scale, "nan_ok": float("nan")})
        (runs / f"{record.run_id}.json").write_bytes(_codec.RUN_RECORD.encode(record))

    print(f"{'run':<10} {'status':<8} {'scale':>6} {'score':>8}  (read back from {runs})")
    for path in sorted(runs.glob("*.json")):
        rec = _codec.RUN_RECORD.decode(path.read_bytes(), source=str(path))
        print(
            f"{rec.run_id[-8:]:<10} {rec.status:<8} {rec.params['scale']!s:>6} "
            f"{rec.metrics['score']:>8.4f}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="metalab-")))
