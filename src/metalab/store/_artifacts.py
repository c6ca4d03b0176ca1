"""The artifacts of one store directory: their files and the manifest that names them.

A run's artifacts live in ``artifacts/{run_id}/``, beside a ``_manifest.json`` that
names each one with its sha256 and size. The pair changes under the directory's lock,
and a manifest never names a file whose bytes it does not describe: replaced bytes go
to a file of their own, the manifest moves to it, and only then is the old file
removed. A crash in between leaves at worst a file nothing names, which
:meth:`Artifacts.unreferenced_artifacts` lists for ``store gc``.
"""

# str paths with os functions, as in _directory.
# ruff: noqa: PTH105

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from metalab import _codec
from metalab.errors import ArtifactNotFoundError, ConfigError, CorruptRecordError
from metalab.records import ArtifactDescriptor, ArtifactManifest, JSONValue
from metalab.store._fileio import (
    StoreLock,
    atomic_write,
    copy_to_temp,
    discard,
    fsync_directory,
    read_bytes,
    remove_file,
    write_temp,
)
from metalab.store._layout import ARTIFACT_MANIFEST_FILE, FileStoreLayout
from metalab.store._rules import validate_name
from metalab.store.abc import ArtifactSource

__all__ = ["Artifacts"]

OnError = Callable[[CorruptRecordError], None]
"""Called with each manifest that cannot be read; without one, the error is raised."""


class Artifacts:
    """The artifacts of one store directory.

    Args:
        layout: The directory's layout.
        lock: The directory's lock, shared with its record writers.
        durable: fsync every written file and its directory.
    """

    __slots__ = ("_durable", "_layout", "_lock")

    def __init__(self, layout: FileStoreLayout, lock: StoreLock, *, durable: bool) -> None:
        self._layout = layout
        self._lock = lock
        self._durable = durable

    def put_artifact(
        self,
        run_id: str,
        name: str,
        data: ArtifactSource,
        *,
        kind: str = "bytes",
        format: str = "bin",
        metadata: Mapping[str, JSONValue] | None = None,
    ) -> ArtifactDescriptor:
        """Store an artifact file and record it (sha256, size) in the run's manifest.

        The new bytes and the manifest that describes them change under the
        directory's lock; putting a name again replaces it.

        Raises:
            ConfigError: The run id, name or format cannot be part of a file name,
                or another artifact of the run already uses the same file name.
            TypeError: ``data`` is neither bytes-like nor a path.
        """
        plain = self._layout.artifact_uri(run_id, name, format)
        if not isinstance(data, bytes | bytearray | memoryview | os.PathLike):
            raise TypeError(
                "artifact data must be bytes, bytearray, memoryview or a path "
                f"(os.PathLike, e.g. pathlib.Path), got {type(data).__name__}"
            )
        directory = self._layout.artifact_dir(run_id)
        directory.mkdir(exist_ok=True)
        dir_str = str(directory)
        if isinstance(data, os.PathLike):
            digest, size, tmp = copy_to_temp(data, dir_str, durable=self._durable)
        else:
            view = memoryview(data)
            view = view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
            digest, size = hashlib.sha256(view).hexdigest(), view.nbytes
            tmp = write_temp(dir_str, view, durable=self._durable)
        artifact_id = uuid.uuid4()
        manifest_path = self._layout.artifact_manifest_path(run_id)
        try:
            with self._lock:
                artifacts = list(self._read_artifact_manifest(manifest_path))
                clash = [a.name for a in artifacts if a.uri == plain and a.name != name]
                if clash:
                    raise ConfigError(
                        f"artifact {name!r} of run {run_id!r} would overwrite the file of "
                        f"artifact {clash[0]!r} ({plain}); choose another name or format"
                    )
                index = next((i for i, a in enumerate(artifacts) if a.name == name), None)
                replaced = None if index is None else artifacts[index]
                # Never write over the file the manifest names: the new bytes go to a
                # file of their own, the manifest moves to them, and only then is the
                # old file removed, so a crash at any point leaves a manifest whose
                # files hold what it says (and at worst an unreferenced file).
                uri = plain
                if replaced is not None and replaced.uri == plain:
                    uri = self._layout.artifact_uri(
                        run_id, name, format, version=artifact_id.hex[:12]
                    )
                descriptor = ArtifactDescriptor(
                    name=name,
                    kind=kind,
                    format=format,
                    uri=uri,
                    content_hash=digest,
                    size_bytes=size,
                    artifact_id=str(artifact_id),
                    metadata=dict(metadata or {}),
                )
                if index is None:
                    artifacts.append(descriptor)
                else:
                    artifacts[index] = descriptor
                os.replace(tmp, self._layout.directory / uri)
                if self._durable:
                    fsync_directory(dir_str)
                manifest = ArtifactManifest(artifacts=tuple(artifacts))
                atomic_write(
                    manifest_path,
                    _codec.ARTIFACT_MANIFEST.encode(manifest),
                    durable=self._durable,
                )
                if replaced is not None and replaced.uri != uri:
                    remove_file(self._resolve_uri(replaced.uri, manifest_path))
        except BaseException:
            discard(tmp)
            raise
        return descriptor

    def _read_artifact_manifest(self, path: Path) -> tuple[ArtifactDescriptor, ...]:
        data = read_bytes(str(path))
        if data is None:
            return ()
        return _codec.ARTIFACT_MANIFEST.decode(data, source=str(path)).artifacts

    def _resolve_uri(self, uri: str, manifest_path: Path) -> Path:
        relative = posixpath.normpath(uri.replace("\\", "/"))
        if posixpath.isabs(relative) or relative.split("/", 1)[0] == "..":
            raise CorruptRecordError(
                str(manifest_path), f"artifact uri {uri!r} points outside the store directory"
            )
        return self._layout.directory / relative

    def open_artifact(self, run_id: str, name: str) -> IO[bytes]:
        """Open an artifact for binary reading (the caller closes it).

        Raises:
            ArtifactNotFoundError: The run has no such artifact, or its file is gone.
        """
        validate_name(name, "artifact name")
        manifest_path = self._layout.artifact_manifest_path(run_id)
        for descriptor in self._read_artifact_manifest(manifest_path):
            if descriptor.name == name:
                path = self._resolve_uri(descriptor.uri, manifest_path)
                try:
                    return path.open("rb")
                except FileNotFoundError as exc:
                    raise ArtifactNotFoundError(run_id, name) from exc
        raise ArtifactNotFoundError(run_id, name)

    def get_artifact(self, run_id: str, name: str) -> bytes:
        """Return an artifact's bytes (see :meth:`open_artifact`)."""
        with self.open_artifact(run_id, name) as stream:
            return stream.read()

    def list_artifacts(self, run_id: str) -> list[ArtifactDescriptor]:
        """Return the descriptors in a run's manifest (empty if it has none)."""
        return list(self._read_artifact_manifest(self._layout.artifact_manifest_path(run_id)))

    def unreferenced_artifacts(
        self, modified_before: float, on_error: OnError | None = None
    ) -> list[Path]:
        """Return the artifact files no manifest names, last modified before a time.

        A replaced artifact's new bytes go to a file of their own and the old file is
        removed once the manifest names the new one, so a crash in between leaves a
        file that nothing names; so does a crash between placing a run's first
        artifact and writing its manifest. Manifests and hidden files (temp files) are
        never listed.

        Args:
            modified_before: A POSIX time; files modified since are left out (a writer
                may be about to name them).
            on_error: Called with the error of each manifest that cannot be read
                (nothing in its directory is listed); without it the error is raised.
        """
        found: list[Path] = []
        for run_dir in self._artifact_run_dirs():
            found.extend(self._unreferenced_in(run_dir, modified_before, on_error))
        return found

    def remove_unreferenced_artifacts(
        self, modified_before: float, on_error: OnError | None = None
    ) -> list[Path]:
        """Remove what :meth:`unreferenced_artifacts` lists; return the files removed.

        Each run's directory is judged again under the directory's lock, which
        :meth:`put_artifact` holds from placing a file until its manifest names it.
        """
        removed: list[Path] = []
        for run_dir in self._artifact_run_dirs():
            with self._lock:
                for path in self._unreferenced_in(run_dir, modified_before, on_error):
                    if remove_file(path):
                        removed.append(path)
        return removed

    def _artifact_run_dirs(self) -> list[Path]:
        artifacts = self._layout.artifacts_dir
        try:
            with os.scandir(artifacts) as entries:
                names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir())
        except FileNotFoundError:
            return []
        return [artifacts / name for name in names]

    def _unreferenced_in(
        self, run_dir: Path, modified_before: float, on_error: OnError | None
    ) -> list[Path]:
        manifest_path = run_dir / ARTIFACT_MANIFEST_FILE
        try:
            named = {
                os.path.normpath(self._resolve_uri(a.uri, manifest_path))
                for a in self._read_artifact_manifest(manifest_path)
            }
        except CorruptRecordError as exc:
            if on_error is None:
                raise
            on_error(exc)
            return []
        found: list[Path] = []
        try:
            with os.scandir(run_dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or name == ARTIFACT_MANIFEST_FILE:
                        continue
                    path = run_dir / name
                    if os.path.normpath(path) in named:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        if entry.stat(follow_symlinks=False).st_mtime >= modified_before:
                            continue
                    except FileNotFoundError:
                        continue
                    found.append(path)
        except FileNotFoundError:
            return []
        return sorted(found)
