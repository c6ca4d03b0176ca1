"""Every code block of the storage spec runs as written.

``data/spec_storage.md`` is a verbatim copy of the user's specification. Its Python
blocks run in order in one namespace (a user following the page top to bottom,
with ``exp`` defined), in a temporary working directory. Only what cannot exist on a
test machine is moved: the PostgreSQL URLs point at the test server (whose default
schema is emptied before each block that names a server, as the blocks are examples
on databases of their own), and absolute paths (``/shared/experiments``,
``/path/to/files``, ...) live under the temporary directory. The ``metalab store export`` command block runs as a subprocess.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import metalab
from metalab.store import registry as registry_module

SPEC = Path(__file__).parent / "data" / "spec_storage.md"
BLOCK = re.compile(r"```(?P<lang>\w+)\n(?P<code>.*?)```", re.DOTALL)
ABSOLUTE_PATHS = (
    "/shared/experiments",
    "/path/to/files",
    "/path/to/existing/store",
    "/path/to/export",
    "/absolute/path",
    "/data",
)


def _blocks(lang: str) -> list[str]:
    return [m["code"] for m in BLOCK.finditer(SPEC.read_text()) if m["lang"] == lang]


@metalab.operation
def train(params: dict[str, Any], seeds: metalab.SeedBundle, capture: metalab.Capture) -> None:
    capture.metric("score", seeds.rng().random() * params["scale"])


def _relocate(code: str, url: str, tmp: Path) -> str:
    """Point the spec's server URLs at the test server and its absolute paths at ``tmp``."""
    for spec_url in ("postgresql://user@localhost/metalab", "postgresql://localhost/db"):
        code = code.replace(f"{spec_url}?", f"{url}&").replace(f'{spec_url}"', f'{url}"')
    for path in ABSOLUTE_PATHS:
        code = re.sub(rf"(?<![\w/]){re.escape(path)}(?![\w])", f"{tmp}{path}", code)
    return code


def test_the_spec_has_the_blocks_this_test_expects() -> None:
    assert len(_blocks("python")) == 13
    assert _blocks("bash")[-1].startswith("metalab store export")


def _empty_public_schema(url: str) -> None:
    # A run an earlier block started may still be writing (its triggers touch several
    # tables): dropping them all under it can deadlock, and the drop is then retried.
    for attempt in range(10):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
            return
        except psycopg.errors.DeadlockDetected:
            if attempt == 9:
                raise
            time.sleep(0.2)


@pytest.fixture
def public_schema(postgres_url: str) -> Iterator[None]:
    yield
    _empty_public_schema(postgres_url)


@pytest.mark.usefixtures("public_schema")
def test_every_python_block_runs_in_order(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    # The custom-store block registers "myscheme"; keep it out of the process registry.
    monkeypatch.setattr(registry_module, "registry", registry_module.registry.copy())
    # The spec's URLs name no schema, so its blocks index into "public"; the
    # ``public_schema`` fixture empties it afterwards.
    url = postgres_url
    exp = metalab.Experiment(
        name="my_exp",
        version="1.0",
        context={},
        operation=train,
        params=metalab.grid(scale=[0.1, 1.0, 10.0]),
        seeds=metalab.seeds(base=123, replicates=2),
    )
    namespace: dict[str, Any] = {"exp": exp, "__name__": "spec"}
    for number, code in enumerate(_blocks("python")):
        # Each block that names a server is an example on a database of its own: the
        # spec's blocks index files under five different roots into the default
        # schema, and an index answers only for the root it was built from.
        if "postgresql://" in code:
            _empty_public_schema(url)
        try:
            # dont_inherit: run the block as a user's module would, without this
            # file's ``from __future__ import annotations``.
            compiled = compile(
                _relocate(code, url, tmp_path), f"<spec block {number}>", "exec", dont_inherit=True
            )
            exec(compiled, namespace)
        except Exception as exc:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"spec block {number} failed: {exc!r}\n{code}")
    # What the blocks promise, checked afterwards:
    assert (tmp_path / "experiments" / "my_exp_1.0" / "_meta.json").is_file()
    assert (tmp_path / "shared" / "experiments" / "my_exp_1.0" / "runs").is_dir()
    assert namespace["experiments"] == ["my_exp:1.0"]
    assert len(namespace["df"]) == len(namespace["results"]) > 0
    # The blocks start sweeps without waiting for them (run() returns a handle at
    # once); once they are done, the collection holds the whole experiment.
    deadline = time.monotonic() + 120
    while True:
        with metalab.load_results("./experiments", "my_exp:1.0") as loaded:
            if len(loaded.successful) == 6:
                break
        assert time.monotonic() < deadline, "the spec's sweeps did not finish"
        time.sleep(0.2)
    assert namespace["d"] == {
        "root": str(tmp_path / "experiments"),
        "experiment_id": "my_exp:1.0",
        "_type": "file",
    }
    assert type(namespace["store"]).__name__ == "MyCustomStore"


def test_the_cli_export_block(tmp_path: Path) -> None:
    (command,) = [b for b in _blocks("bash") if b.startswith("metalab")]
    handle = metalab.run(
        metalab.Experiment(
            name="my_exp",
            version="1.0",
            context={},
            operation=train,
            params=metalab.grid(scale=[1.0, 2.0]),
        ),
        store=tmp_path / "experiments",
    )
    handle.result()
    # A user moved one experiment directory to ./runs/my_exp, as the spec's example has it.
    (tmp_path / "runs").mkdir()
    shutil.copytree(tmp_path / "experiments" / "my_exp_1.0", tmp_path / "runs" / "my_exp")
    args = shlex.split(command)
    proc = subprocess.run(
        [sys.executable, "-m", "metalab", *args[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "backup" / "my_exp_1.0" / "runs").glob("*.json"))) == 2
