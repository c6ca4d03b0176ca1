"""Context specs: datasets identified by content, hashed lazily, once, and cached."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

import metalab
from metalab import context as context_module
from metalab.errors import ConfigError


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("METALAB_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose content is read to be hashed."""
    seen: list[Path] = []
    real = context_module._read_hash

    def counting(path: Path) -> str:
        seen.append(path)
        return real(path)

    monkeypatch.setattr(context_module, "_read_hash", counting)
    return seen


@metalab.context_spec
class Data:
    train: metalab.FilePath
    images: metalab.DirPath
    vocab_size: int = 100


@metalab.operation
def _count(context: Data, params: dict[str, Any], capture: metalab.Capture) -> None:
    capture.metric("lines", len(Path(context.train).read_text().splitlines()))
    capture.metric("images", len(list(Path(context.images).glob("*.png"))))
    capture.metric("i", params["i"])


def _experiment(spec: Data) -> metalab.Experiment:
    return metalab.Experiment(
        name="ctx", version="1", operation=_count, params=metalab.grid(i=[1, 2]), context=spec
    )


def _files(tmp_path: Path) -> Data:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.csv").write_text("a\nb\n")
    images = tmp_path / "images"
    images.mkdir()
    (images / "x.png").write_bytes(b"png1")
    (images / "notes.txt").write_text("not an image")
    return Data(metalab.FilePath(tmp_path / "train.csv"), metalab.DirPath(images, "*.png"))


def _run_ids(spec: Data, store: Path) -> list[str]:
    return list(metalab.run(_experiment(spec), store=store, progress=False).result().run_ids)


class TestRunIds:
    def test_a_changed_dataset_changes_the_run_ids_an_unchanged_one_keeps_them(
        self, tmp_path: Path
    ) -> None:
        spec = _files(tmp_path)
        first = _run_ids(spec, tmp_path / "store")
        assert _run_ids(_files_again(tmp_path), tmp_path / "store") == first
        # Touched, same content: the same ids (hashed again, not trusted by date).
        os.utime(tmp_path / "train.csv", ns=(1, 1))
        assert _run_ids(_files_again(tmp_path), tmp_path / "store") == first
        (tmp_path / "train.csv").write_text("a\nb\nc\n")
        changed = _run_ids(_files_again(tmp_path), tmp_path / "store")
        assert set(changed).isdisjoint(first)
        (tmp_path / "images" / "y.png").write_bytes(b"png2")
        assert set(_run_ids(_files_again(tmp_path), tmp_path / "store")).isdisjoint(changed)

    def test_files_outside_the_pattern_and_the_paths_themselves_do_not_count(
        self, tmp_path: Path
    ) -> None:
        spec = _files(tmp_path / "a")
        moved = _files(tmp_path / "b")  # the same content elsewhere
        (tmp_path / "b" / "images" / "notes.txt").write_text("other notes")
        assert _run_ids(spec, tmp_path / "s1") == _run_ids(moved, tmp_path / "s2")

    def test_workers_get_the_spec_and_read_the_data_themselves(self, tmp_path: Path) -> None:
        spec = _files(tmp_path)
        results = metalab.run(
            _experiment(spec),
            store=tmp_path / "store",
            executor=metalab.ProcessExecutor(max_workers=2),
            progress=False,
        ).result()
        assert [(r.status, r.metrics["lines"], r.metrics["images"]) for r in results] == [
            ("success", 2, 1),
            ("success", 2, 1),
        ]

    def test_a_missing_file_is_an_error_naming_the_context_field(self, tmp_path: Path) -> None:
        spec = Data(metalab.FilePath(tmp_path / "nope.csv"), metalab.DirPath(tmp_path))
        with pytest.raises(
            ConfigError, match=r"^context: cannot read a path it names: .*nope\.csv"
        ):
            metalab.run(_experiment(spec), store=tmp_path / "store", progress=False)
        assert not (tmp_path / "store").exists()


def _files_again(tmp_path: Path) -> Data:
    return Data(
        metalab.FilePath(tmp_path / "train.csv"), metalab.DirPath(tmp_path / "images", "*.png")
    )


class TestHashing:
    def test_a_file_is_read_once_per_content_and_metadata(
        self, tmp_path: Path, reads: list[Path]
    ) -> None:
        path = tmp_path / "big.bin"
        path.write_bytes(os.urandom(3 << 20))  # three chunks
        expected = hashlib.sha256(path.read_bytes()).hexdigest()
        assert metalab.file_hash(path) == expected
        assert metalab.file_hash(str(path)) == expected
        assert reads == [path.resolve()]  # the second time from the cache
        os.utime(path, ns=(5, 5))
        assert metalab.file_hash(path) == expected
        assert len(reads) == 2  # other metadata: read again

    def test_a_spec_hashes_each_path_once_per_sweep(
        self, tmp_path: Path, reads: list[Path]
    ) -> None:
        spec = _files(tmp_path)
        _run_ids(spec, tmp_path / "store")
        assert len(reads) == 2  # train.csv and the one png
        _run_ids(_files_again(tmp_path), tmp_path / "store")  # a new process would, too
        assert len(reads) == 2

    def test_dir_hash_names_and_contents_matter(self, tmp_path: Path) -> None:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "a.txt").write_text("1")
        (tmp_path / "d" / "sub").mkdir()
        (tmp_path / "d" / "sub" / "b.txt").write_text("2")
        flat = metalab.dir_hash(tmp_path / "d")
        deep = metalab.dir_hash(tmp_path / "d", "**/*.txt")
        assert flat != deep  # sub/b.txt only with **
        (tmp_path / "d" / "a.txt").rename(tmp_path / "d" / "c.txt")
        assert metalab.dir_hash(tmp_path / "d") != flat
        with pytest.raises(FileNotFoundError, match="no directory"):
            metalab.dir_hash(tmp_path / "missing")
        with pytest.raises(IsADirectoryError, match="use dir_hash"):
            metalab.file_hash(tmp_path / "d")

    def test_an_unwritable_cache_only_costs_a_reread(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: list[Path]
    ) -> None:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        monkeypatch.setenv("METALAB_CACHE_DIR", str(blocker))
        path = tmp_path / "f.txt"
        path.write_text("data")
        assert metalab.file_hash(path) == metalab.file_hash(path)
        assert len(reads) == 2


class TestSpecs:
    def test_a_spec_is_a_frozen_dataclass(self, tmp_path: Path) -> None:
        spec = _files(tmp_path)
        assert dataclasses.is_dataclass(spec)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.vocab_size = 3  # type: ignore[misc]

        @metalab.context_spec(frozen=False)
        class Loose:
            value: int = 1

        loose = Loose()
        loose.value = 2
        assert loose.value == 2

    def test_paths_behave_like_paths_and_values(self, tmp_path: Path) -> None:
        fp = metalab.FilePath(tmp_path / "x")
        assert os.fspath(fp) == str(fp) == str(tmp_path / "x")
        assert fp == metalab.FilePath(str(tmp_path / "x"))
        assert fp != metalab.DirPath(tmp_path / "x")
        assert len({fp, metalab.FilePath(tmp_path / "x")}) == 1
        assert repr(metalab.DirPath("d", "*.png")) == "DirPath('d', pattern='*.png')"
        with pytest.raises(AttributeError, match="immutable"):
            fp.path = "y"
        with pytest.raises(TypeError, match="non-empty path"):
            metalab.FilePath("")

    def test_a_path_keeps_its_hash_through_pickling(self, tmp_path: Path) -> None:
        (tmp_path / "x").write_text("1")
        fp = metalab.FilePath(tmp_path / "x")
        digest = fp.content_hash
        copy = pickle.loads(pickle.dumps(fp))
        assert (copy, copy.content_hash) == (fp, digest)
        dp = pickle.loads(pickle.dumps(metalab.DirPath(tmp_path, "*.txt")))
        assert dp.pattern == "*.txt"

    def test_0_1_record_field_name(self) -> None:
        record = metalab.RunRecord.running(run_id="ab" * 32, experiment_id="e:1", params={"a": 1})
        assert record.params_resolved == {"a": 1}
