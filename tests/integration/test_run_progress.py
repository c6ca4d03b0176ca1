"""The progress bar: shown on a terminal only, rich or plain."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metalab._progress import _PlainBar, _RichBar, open_progress


class TerminalBuffer(io.StringIO):
    """A text buffer that says it is a terminal, as a pseudo-terminal would."""

    def isatty(self) -> bool:
        return True


class TestWhenTheBarIsShown:
    def test_no_bar_when_the_stream_is_not_a_terminal(self) -> None:
        assert open_progress(None, "exp:1", 10, stream=io.StringIO()) is None
        assert open_progress(True, "exp:1", 10, stream=io.StringIO()) is None

    def test_no_bar_when_progress_is_false_even_on_a_terminal(self) -> None:
        assert open_progress(False, "exp:1", 10, stream=TerminalBuffer()) is None

    def test_rich_bar_on_a_terminal_when_rich_is_installed(self) -> None:
        stream = TerminalBuffer()
        bar = open_progress(None, "exp:1", 10, stream=stream)
        assert isinstance(bar, _RichBar)
        bar.update(10, 2)
        bar.close()
        assert "exp:1" in stream.getvalue()
        assert "2 failed" in stream.getvalue()

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


class TestPlainBar:
    def test_plain_bar_draws_counts_and_ends_with_a_newline(self) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("exp:1", 4, stream)
        bar.update(1, 0)
        bar.update(4, 1)
        bar.close()
        text = stream.getvalue()
        assert text.startswith("\rexp:1 [")
        assert "4/4, 1 failed" in text
        assert text.endswith("\n")

    def test_plain_bar_is_the_fallback_without_rich(self) -> None:
        code = textwrap.dedent(
            """
            import io, sys
            sys.modules["rich"] = None
            from metalab._progress import _PlainBar, open_progress

            class Tty(io.StringIO):
                def isatty(self):
                    return True

            print(type(open_progress(None, "e:1", 3, stream=Tty())).__name__)
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert proc.stdout.strip() == _PlainBar.__name__

    @pytest.mark.parametrize("total", [0, 1])
    def test_plain_bar_handles_tiny_totals(self, total: int) -> None:
        stream = TerminalBuffer()
        bar = _PlainBar("e:1", total, stream)
        bar.update(total, 0)
        bar.close()
        assert f"{total}/{total}" in stream.getvalue()
