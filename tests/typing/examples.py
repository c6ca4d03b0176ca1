"""Code a user would write, checked by mypy --strict (see test_mypy.py).

The ``reveal_type`` lines are compared with the expected types by test_mypy.py.
"""

from __future__ import annotations

import datetime as dt
from typing import reveal_type

from metalab import _codec
from metalab.records import MetricValue, RunRecord

rec = RunRecord.running(run_id="a" * 64, experiment_id="exp:1")
done = rec.succeeded(metrics={"acc": 0.9, "ok": True, "name": "x", "n": 3})
reveal_type(done)  # E: metalab.records.RunRecord
status = done.status
reveal_type(status)  # E: Literal['running'] | Literal['success'] | Literal['failed'] | Literal['cancelled']
reveal_type(done.finished_at)  # E: datetime.datetime | None
value: MetricValue = done.metrics["acc"]
data: bytes = _codec.RUN_RECORD.encode(done)
back = _codec.RUN_RECORD.decode(data)
reveal_type(back)  # E: metalab.records.RunRecord
started: dt.datetime = back.started_at
