"""The real-server fixture: a missing server skips locally and fails under CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metalab.testing.postgres import ENV_URL

NEEDS_SERVER = """
def test_needs_a_server(postgres_url):
    assert postgres_url
"""


def run_pytest(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(NEEDS_SERVER)
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", ENV_URL)}
    environment.update(env)
    plugin = ["-p", "metalab.testing.postgres", "-p", "no:cacheprovider", "-W", "error"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugin, *args, str(tmp_path / "test_probe.py")],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


UNREACHABLE = "postgresql://probe:sekret@127.0.0.1:1/none"


class TestServerFixture:
    def test_an_unreachable_server_skips_the_test_outside_ci(self, tmp_path: Path) -> None:
        proc = run_pytest(tmp_path, "-rs", **{ENV_URL: UNREACHABLE})
        assert proc.returncode == 0, proc.stdout
        assert "1 skipped" in proc.stdout
        assert "no PostgreSQL server" in proc.stdout
        assert "postgres: postgresql://probe:***@127.0.0.1:1/none" in proc.stdout
        assert "sekret" not in proc.stdout + proc.stderr

    def test_an_unreachable_server_fails_the_test_under_ci(self, tmp_path: Path) -> None:
        proc = run_pytest(tmp_path, CI="true", **{ENV_URL: UNREACHABLE})
        assert proc.returncode == 1, proc.stdout
        assert "CI=true, and this test cannot run: no PostgreSQL server" in proc.stdout
        assert "sekret" not in proc.stdout + proc.stderr

    def test_tests_using_the_fixture_get_the_postgres_marker(self, tmp_path: Path) -> None:
        proc = run_pytest(tmp_path, "-q", "--collect-only", "-m", "postgres")
        assert "1 test collected" in proc.stdout, proc.stdout
