"""Progress: one display for the library and the CLI, on terminals and in notebooks."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import types
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab import _progress, runner
from metalab._progress import Progress, _PlainBar, _RichBar, in_notebook, open_progress


class TerminalBuffer(io.StringIO):
    """A text buffer that says it is a terminal, as a pseudo-terminal would."""

    def isatty(self) -> bool:
        return True


class TestWhereABarIsDrawn:
    def test_nothing_is_drawn_when_the_stream_is_not_a_terminal(self) -> None:
        stream = io.StringIO()
        for enabled in (None, True):
            bar = open_progress("exp:1", 10, enabled=enabled, stream=stream)
            assert type(bar) is Progress
            bar(5, 10)
            bar.close()
        assert stream.getvalue() == ""

    def test_nothing_is_drawn_when_disabled_even_on_a_terminal(self) -> None:
        assert type(open_progress("exp:1", 10, enabled=False, stream=TerminalBuffer())) is Progress

    def test_rich_bar_on_a_terminal_when_rich_is_installed(self) -> None:
        stream = TerminalBuffer()
        bar = open_progress("exp:1", 10, stream=stream)
        assert isinstance(bar, _RichBar)
        bar.note("2 failed")
        bar(10, 10)
        bar.close()
        assert "exp:1" in stream.getvalue()
        assert "2 failed" in stream.getvalue()

    def test_plain_bar_is_the_fallback_without_rich(self) -> None:
        code = textwrap.dedent(
            """
            import io, sys
            sys.modules["rich"] = None
            from metalab._progress import open_progress

            class Tty(io.StringIO):
                def isatty(self):
                    return True

            print(type(open_progress("e:1", 3, stream=Tty())).__name__)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert proc.stdout.strip() == _PlainBar.__name__

    def test_a_sweep_writes_nothing_to_stderr_when_it_is_not_a_terminal(
        self, tmp_path: Path
    ) -> None:
        code = textwrap.dedent(
            f"""
            import metalab
            op = metalab.operation(lambda capture: capture.metric("x", 1))
            exp = metalab.Experiment(
                name="quiet", version="1", operation=op, params=metalab.grid(i=[1, 2, 3])
            )
            print(len(metalab.run(exp, store={str(tmp_path)!r}).result()))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert proc.stdout.strip() == "3"
        assert proc.stderr == ""


class _Shell:
    """Stands in for IPython's shell; only its class name matters."""


def _fake_ipython(monkeypatch: pytest.MonkeyPatch, shell_class_name: str | None) -> None:
    module = types.ModuleType("IPython")
    shell = None if shell_class_name is None else type(shell_class_name, (_Shell,), {})()
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


class TestNotebooks:
    def test_a_jupyter_kernel_is_recognised_by_its_shell(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.delitem(sys.modules, "IPython", raising=False)
        assert not in_notebook()
        _fake_ipython(monkeypatch, None)  # IPython imported, no shell running
        assert not in_notebook()
        _fake_ipython(monkeypatch, "TerminalInteractiveShell")  # ipython in a terminal
        assert not in_notebook()
        _fake_ipython(monkeypatch, "ZMQInteractiveShell")
        assert in_notebook()

    def test_a_notebook_without_ipywidgets_gets_the_plain_bar_on_its_stream(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A notebook's stderr is no terminal, yet it redraws carriage returns in place.
        _fake_ipython(monkeypatch, "ZMQInteractiveShell")
        monkeypatch.setitem(sys.modules, "ipywidgets", None)
        stream = io.StringIO()
        bar = open_progress("exp:1", 4, stream=stream)
        assert isinstance(bar, _PlainBar)
        bar(4)
        bar.close()
        assert "4/4" in stream.getvalue()

    def test_a_notebook_with_rich_and_ipywidgets_gets_a_rich_bar_drawn_by_jupyter(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _fake_ipython(monkeypatch, "ZMQInteractiveShell")
        monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
        made: list[dict[str, Any]] = []

        class Recorder(Progress):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                made.append({"args": args, **kwargs})

        monkeypatch.setattr(_progress, "_RichBar", Recorder)
        open_progress("exp:1", 4, stream=io.StringIO())
        assert made == [{"args": ("exp:1", 4, None), "transient": False, "notebook": True}]


class TestPlainBar:
    def test_draws_counts_and_note_and_ends_with_a_newline(self) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("exp:1", 4, stream)
        bar(1)
        bar.note("1 failed")
        bar(4)
        bar.close()
        text = stream.getvalue()
        assert text.startswith("\rexp:1 [")
        assert "4/4, 1 failed" in text
        assert text.endswith("\n")

    @pytest.mark.parametrize("total", [0, 1])
    def test_handles_tiny_totals(self, total: int) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("e:1", total, stream)
        bar(total)
        bar.close()
        assert f"{total}/{total}" in stream.getvalue()

    def test_counts_without_a_total_and_takes_one_when_it_is_known(self) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("listing", None, stream)
        bar(7)
        bar.close()
        assert "\rlisting 7 " in stream.getvalue()
        bar(3, 9)
        bar.close()
        assert "3/9" in stream.getvalue()

    def test_a_stopped_bar_says_why_and_stays_where_it_stopped(self) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("e:1", 10, stream)
        bar(3)
        bar.close(stopped="cancelled")
        last = stream.getvalue().rsplit("\r", 1)[-1]
        assert "3/10" in last
        assert last.endswith("(cancelled)\n")


class _Recorder(Progress):
    """Keeps what a sweep reports to its bar."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.closed_with: list[str | None] = []

    def __call__(self, done: int, total: int | None = None) -> None:
        self.calls.append((done, total))

    def close(self, *, stopped: str | None = None) -> None:
        self.closed_with.append(stopped)


class TestSweepBar:
    def test_a_cancelled_sweep_does_not_fill_its_bar(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        bar = _Recorder()
        monkeypatch.setattr(runner, "open_progress", lambda *_args, **_kwargs: bar)
        started = threading.Event()
        release = threading.Event()

        @metalab.operation
        def wait(params: dict[str, Any], capture: metalab.Capture) -> None:
            started.set()
            release.wait(10)
            capture.metric("i", params["i"])

        exp = metalab.Experiment(
            name="stop", version="1", operation=wait, params=metalab.grid(i=list(range(20)))
        )
        handle = metalab.run(exp, store=tmp_path)
        assert started.wait(10)
        handle.cancel()
        release.set()
        results = handle.result(timeout=30)
        assert handle.cancelled >= 18
        assert bar.closed_with == ["cancelled"]
        done, total = bar.calls[-1]
        assert total == 20
        assert done == sum(1 for r in results if r.status == "success") < 20

    def test_a_finished_sweep_fills_its_bar_and_counts_failures(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        bar = _Recorder()
        notes: list[str] = []
        monkeypatch.setattr(bar, "note", notes.append)
        monkeypatch.setattr(runner, "open_progress", lambda *_args, **_kwargs: bar)

        @metalab.operation
        def odd_fails(params: dict[str, Any]) -> None:
            if params["i"] % 2:
                raise ValueError("odd")

        exp = metalab.Experiment(
            name="fill", version="1", operation=odd_fails, params=metalab.grid(i=list(range(6)))
        )
        metalab.run(exp, store=tmp_path).result()
        assert bar.calls[-1] == (6, 6)
        assert bar.closed_with == [None]
        assert notes[-1] == "3 failed"
