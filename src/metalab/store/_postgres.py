"""PostgresStore: the FileStore (the source of truth) plus a PostgresIndex (the speed).

:class:`PostgresStoreConfig` is pure data; :class:`PostgresStore` is an
:class:`~metalab.store._indexed.IndexedStore` whose index is a
:class:`~metalab.store.PostgresIndex`. Neither imports psycopg: the index module is
loaded when a store is opened, so configs parse and serialise without the driver.

A locator looks like ``postgresql://user:password@host:5432/db?file_root=/data``
(``postgres://`` works too). The query parameters listed in :data:`METALAB_PARAMS`
belong to metalab and are removed before the connection string reaches libpq; every
other parameter (``sslmode``, ``host`` for a socket directory, ...) is passed through
untouched. ``file_root`` is required: the files are the source of truth, and the
database only indexes them. Connection strings are shown redacted everywhere (the
password becomes ``***``), including in ``repr``.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, get_args
from urllib.parse import quote, unquote

from metalab import _optional
from metalab.errors import ConfigError, IndexUnavailableError, LocatorError
from metalab.store._file import FileStore, FileStoreConfig
from metalab.store._index import IndexErrorPolicy, IndexState, RecordIndex
from metalab.store._indexed import IndexedStore, check_files_exist
from metalab.store._rules import validate_experiment_id
from metalab.store.abc import StoreConfig
from metalab.store.locator import parse_locator, redact

if TYPE_CHECKING:
    from metalab.store.locator import LocatorInfo

__all__ = ["METALAB_PARAMS", "PostgresStore", "PostgresStoreConfig"]

_log = logging.getLogger(__name__)


METALAB_PARAMS: Final = (
    "file_root",
    "schema",
    "experiment_id",
    "pool_min_size",
    "pool_max_size",
    "connect_timeout",
    "pool_timeout",
    "on_index_error",
)
"""Query parameters of a locator that configure metalab rather than libpq."""

_SCHEMES: Final = ("postgresql", "postgres")
_URI: Final = re.compile(r"^(?P<scheme>postgres(?:ql)?)://", re.IGNORECASE)
_MAX_IDENTIFIER_BYTES: Final = 63
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
_USERINFO_END: Final = re.compile(r"[@/]")
_HOSTS_END: Final = re.compile(r"[/?]")
_PORT: Final = re.compile(r"[0-9]*")
_FILE_ROOT_HINT: Final = (
    "add the directory that holds the files, either in the locator "
    "('postgresql://host/db?file_root=/path/to/files') or as a keyword "
    "(file_root='/path/to/files')"
)


#: libpq's connection keywords (its documentation, "Parameter Key Words"). A key that
#: is neither one of these nor metalab's, but close to one, is a typo.
_LIBPQ_KEYS: Final = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslnegotiation",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslkeylogfile",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "min_protocol_version",
        "max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        "oauth_issuer",
        "oauth_client_id",
        "oauth_client_secret",
        "oauth_scope",
    ]
)


def _check_libpq_key(key: str, where: str) -> None:
    """Refuse a locator option that looks like a misspelt one (``shema``, ``sslmod``).

    A key close to none is left to libpq, whose newer versions may know keys that
    this list does not.

    Raises:
        LocatorError: ``key`` is no known option but close to one.
    """
    if key in _LIBPQ_KEYS:
        return
    close = difflib.get_close_matches(key, [*METALAB_PARAMS, *_LIBPQ_KEYS], n=1, cutoff=0.75)
    if close:
        raise LocatorError(
            f"unknown option {key!r} in the locator {where!r}; did you mean {close[0]!r}?"
        )


def _split_query(uri: str) -> tuple[str, list[str]]:
    base, _, query = uri.partition("?")
    return base, [pair for pair in query.split("&") if pair]


def _pair_key(pair: str) -> str:
    return unquote(pair.partition("=")[0])


def _quote_param(value: str) -> str:
    return quote(value, safe="/:@")


@dataclass(frozen=True, kw_only=True, repr=False)
class PostgresStoreConfig(StoreConfig):
    """The config of a :class:`~metalab.store.PostgresStore`.

    Attributes:
        connection_string: A libpq URI (``postgresql://`` or ``postgres://``) without
            metalab's own query parameters; it may hold a password, which is never
            shown.
        file_root: The directory of the files that are the source of truth (a
            collection root, a standalone store, or the parent of a scoped
            experiment's directory); made absolute.
        schema: The PostgreSQL schema holding the index tables.
        experiment_id: The experiment this config is scoped to, or ``None``.
        pool_min_size: Connections the pool keeps open.
        pool_max_size: Connections the pool may open at most.
        connect_timeout: Seconds libpq may take to open one connection.
        pool_timeout: Seconds to wait for the pool to open, or for a free
            connection, before the index counts as unreachable.
        on_index_error: What reads do while the index is unreachable or stale:
            ``"raise"`` an :class:`~metalab.errors.IndexUnavailableError`, or
            ``"fallback"`` to reading the files (with one warning).
    """

    scheme: ClassVar[str] = "postgresql"
    aliases: ClassVar[tuple[str, ...]] = ("postgres",)

    connection_string: str
    # A default only so that a missing value gets metalab's error (which says how to
    # add it) instead of the dataclass's bare TypeError; an empty root is refused.
    file_root: str = ""
    schema: str = "public"
    experiment_id: str | None = None
    pool_min_size: int = 1
    pool_max_size: int = 4
    connect_timeout: float = 10.0
    pool_timeout: float = 10.0
    on_index_error: IndexErrorPolicy = "raise"

    def __post_init__(self) -> None:
        self._check_connection_string()
        root: object = self.file_root
        if not isinstance(root, str) or not root:
            raise LocatorError(
                f"a PostgresStore needs file_root, but "
                f"{redact(str(self.connection_string))!r} has none; {_FILE_ROOT_HINT}"
            )
        object.__setattr__(self, "file_root", os.path.normpath(Path(root).expanduser().absolute()))
        schema: object = self.schema
        if (
            not isinstance(schema, str)
            or not schema
            or "\x00" in schema
            or len(schema.encode()) > _MAX_IDENTIFIER_BYTES
        ):
            raise ConfigError(
                f"invalid postgres schema name {schema!r}: use 1 to "
                f"{_MAX_IDENTIFIER_BYTES} bytes without NUL (e.g. 'public' or 'metalab')"
            )
        if self.experiment_id is not None:
            validate_experiment_id(self.experiment_id)
        self._check_pool()
        policy: object = self.on_index_error
        if policy not in get_args(IndexErrorPolicy):
            raise ConfigError(f"invalid on_index_error {policy!r}: use 'raise' or 'fallback'")

    def _check_connection_string(self) -> None:
        conninfo: object = self.connection_string
        if not isinstance(conninfo, str):
            # Not shown: a str() of it could still hold the password.
            raise LocatorError(
                f"invalid connection_string of type {type(conninfo).__name__}: use a libpq "
                "URI (a str) such as 'postgresql://user@host:5432/dbname'"
            )
        if _URI.match(conninfo) is None:
            raise LocatorError(
                f"invalid connection_string {redact(conninfo)!r}: use a libpq URI such as "
                "'postgresql://user@host:5432/dbname'"
            )
        problem = _uri_problem(conninfo)
        if problem is not None:
            raise LocatorError(
                f"invalid connection_string {redact(conninfo)!r}: {problem}; "
                "percent-encode '/', '@', ':', '?', '#' and '%' in a user name or "
                "password (e.g. '/' as %2F, '@' as %40)"
            )
        if "#" in conninfo:
            raise LocatorError(
                f"connection_string {redact(conninfo)!r} has a '#' fragment; "
                "percent-encode '#' in passwords as %23"
            )
        _, pairs = _split_query(conninfo)
        ours = sorted({_pair_key(p) for p in pairs} & set(METALAB_PARAMS))
        if ours:
            raise ConfigError(
                f"connection_string {redact(conninfo)!r} holds metalab parameter(s) {ours}; "
                "pass them as PostgresStoreConfig fields instead (or parse the whole "
                "locator with parse_to_config())"
            )

    def _check_pool(self) -> None:
        low: object = self.pool_min_size
        high: object = self.pool_max_size
        if type(low) is not int or type(high) is not int or low < 0 or high < 1 or high < low:
            raise ConfigError(
                f"invalid pool sizes (pool_min_size={low!r}, pool_max_size={high!r}): "
                "use integers with 0 <= pool_min_size <= pool_max_size and pool_max_size >= 1"
            )
        for name in ("connect_timeout", "pool_timeout"):
            value: object = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not value > 0
                or value == float("inf")
            ):
                raise ConfigError(f"invalid {name} {value!r}: use a positive number of seconds")
            object.__setattr__(self, name, float(value))

    def __repr__(self) -> str:
        parts = [f"connection_string={self.redacted_connection_string!r}"]
        parts += [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "connection_string"
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    @property
    def redacted_connection_string(self) -> str:
        """The connection string with any password replaced by ``***``."""
        return redact(self.connection_string)

    def connect(self) -> PostgresStore:
        """Open the store: its files, a connection pool, and the index schema.

        Raises:
            MissingDependencyError: psycopg or psycopg_pool is not installed.
            IndexUnavailableError: The server cannot be reached and
                ``on_index_error`` is ``"raise"``.
        """
        return PostgresStore.open(self)

    @classmethod
    def from_locator(cls, info: LocatorInfo, **kwargs: Any) -> Self:
        """Build a config from a ``postgresql://`` or ``postgres://`` locator.

        Args:
            info: The parsed locator.
            **kwargs: Config fields (``file_root``, ``schema``, ``experiment_id``,
                ...), overriding the locator's query parameters.

        Raises:
            LocatorError: The locator is not a Postgres URI or lacks ``file_root``.
            ConfigError: A keyword is not a field, or a value is invalid.
        """
        if info.scheme not in _SCHEMES:
            raise LocatorError(
                f"{info.redacted()!r} is not a PostgreSQL locator; "
                "use postgresql://user@host:5432/db?file_root=/path"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - fields)
        if unknown:
            raise ConfigError(
                f"unknown PostgresStoreConfig option(s) {unknown}; known: {sorted(fields)}"
            )
        raw = info.raw or _rebuild_uri(info)
        base, pairs = _split_query(raw)
        ours: dict[str, str] = {}
        libpq: list[str] = []
        for pair in pairs:
            key = _pair_key(pair)
            if key in METALAB_PARAMS:
                ours[key] = unquote(pair.partition("=")[2])
            else:
                _check_libpq_key(key, info.redacted())
                libpq.append(pair)
        values: dict[str, Any] = {
            "connection_string": base + ("?" + "&".join(libpq) if libpq else "")
        }
        values.update(_typed_params(ours, info.redacted()))
        values.update(kwargs)
        if not values.get("file_root"):
            raise LocatorError(
                f"PostgreSQL locator {info.redacted()!r} has no file_root; {_FILE_ROOT_HINT}"
            )
        return cls(**values)

    def to_locator(self) -> str:
        """Return the locator of this config (inverse of :meth:`from_locator`).

        The result holds the password, if the connection string has one: it is a
        complete locator, meant for configs and process boundaries, not for logs.
        """
        params: list[tuple[str, str]] = [("file_root", self.file_root)]
        for field in dataclasses.fields(self):
            if field.name in ("connection_string", "file_root"):
                continue
            value = getattr(self, field.name)
            if value is None or value == field.default:
                continue
            params.append((field.name, repr(value) if isinstance(value, float) else str(value)))
        query = "&".join(f"{name}={_quote_param(value)}" for name, value in params)
        separator = "&" if "?" in self.connection_string else "?"
        return f"{self.connection_string}{separator}{query}"

    def list_experiments(self) -> list[str]:
        """Return the ids of the experiments in the index, sorted.

        Raises:
            ConfigError: The config is scoped to one experiment.
            IndexUnavailableError: The index cannot be reached (and the policy is
                ``"raise"``).
        """
        self._require_unscoped("list_experiments()")
        with self.connect() as store:
            return store.list_experiments()

    def for_experiment(self, experiment_id: str) -> Self:
        """Return this collection config scoped to ``experiment_id``.

        Raises:
            ConfigError: The config is already scoped.
        """
        self._require_unscoped("for_experiment()")
        return self.scoped(experiment_id)

    def _require_unscoped(self, operation: str) -> None:
        if self.experiment_id is not None:
            raise ConfigError(
                f"{operation} needs an unscoped (collection) config, but this one is scoped "
                f"to {self.experiment_id!r}; use PostgresStoreConfig(connection_string=..., "
                "file_root=...) without experiment_id"
            )


def _uri_problem(uri: str) -> str | None:
    """What libpq would refuse in ``uri`` by quoting a piece of it, or ``None``.

    libpq's messages about a malformed URI quote the offending part: for a password
    with a raw ``/`` (``user:pass/word@host`` reads as host ``user``, port ``pass``),
    a raw ``@`` (the host becomes ``word@host``) or a bad ``%`` escape, that part is
    a piece of the password, and psycopg_pool logs it on every retry. Such a URI can
    never connect, so it is refused here, where the message shows it redacted. The
    checks follow libpq's reading of a URI, not urllib's.
    """
    if _BAD_PERCENT.search(uri):
        return "a '%' does not start a %XX escape, or it is %00"
    rest = uri.partition("://")[2]
    # libpq ends the user information at the first '@' that comes before any '/'.
    stop = _USERINFO_END.search(rest)
    if stop is not None and stop.group() == "@":
        rest = rest[stop.end() :]
    hosts = _HOSTS_END.split(rest, maxsplit=1)[0]
    if "@" in hosts:
        return "a password or user name holds a raw '@'"
    for host in hosts.split(","):
        _, colon, port = (host.rpartition("]")[2] if host.startswith("[") else host).partition(":")
        if colon and _PORT.fullmatch(port) is None:
            return "a port is not a number (a raw '/' in a password ends the host part)"
    return None


def _rebuild_uri(info: LocatorInfo) -> str:
    """Render a hand-built :class:`LocatorInfo` (one without ``raw``) as a URI."""
    auth = ""
    if info.username is not None:
        auth = quote(info.username, safe="")
        if info.password is not None:
            auth += ":" + quote(info.password, safe="")
        auth += "@"
    host = info.host + (f":{info.port}" if info.port is not None else "")
    query = "&".join(f"{quote(k, safe='')}={_quote_param(v)}" for k, v in info.params.items())
    return f"{info.scheme}://{auth}{host}{info.path}" + (f"?{query}" if query else "")


def _typed_params(params: dict[str, str], shown: str) -> dict[str, Any]:
    """Convert metalab's query parameters from text to the field types."""
    out: dict[str, Any] = {}
    for name, text in params.items():
        try:
            if name in ("pool_min_size", "pool_max_size"):
                out[name] = int(text)
            elif name in ("connect_timeout", "pool_timeout"):
                out[name] = float(text)
            else:
                out[name] = text
        except ValueError:
            raise LocatorError(
                f"invalid {name}={text!r} in PostgreSQL locator {shown!r}: "
                f"expected {'an integer' if name.startswith('pool_m') else 'a number of seconds'}"
            ) from None
    return out


class PostgresStore(IndexedStore):
    """A FileStore whose records are also indexed in PostgreSQL.

    Implements :class:`~metalab.store.abc.Store` and every capability of the
    FileStore (working directory, logs, structured results, experiment manifests,
    experiments, artifact streaming, bulk put, bulk derived metrics, query, delete)
    plus ``SupportsIndexRebuild``, ``SupportsIndexSync`` and
    ``SupportsIndexedFiles``; :class:`~metalab.store._indexed.IndexedStore` holds its
    logic. Connect it with :meth:`PostgresStoreConfig.connect` or wrap an existing
    FileStore with :meth:`from_filestore`.

    Args:
        config: The config the store was opened with.
        files: The FileStore holding the files (the source of truth).
        index: The index of those files.
        stale: Whether the index is known to lag behind the files.
    """

    def __init__(
        self,
        config: PostgresStoreConfig,
        files: FileStore,
        index: RecordIndex,
        *,
        stale: bool = False,
    ) -> None:
        super().__init__(
            files,
            index,
            on_index_error=config.on_index_error,
            name=_index_name(config),
            stale=stale,
        )
        self._config = config

    @classmethod
    def open(
        cls,
        config: PostgresStoreConfig,
        files: FileStore | None = None,
        *,
        create_index: bool = True,
    ) -> Self:
        """Open the files and the index of ``config`` (what ``config.connect()`` does).

        Args:
            config: The store's config.
            files: An open FileStore on ``config.file_root`` to use instead of
                opening one.
            create_index: Create the index's schema and tables if they are missing.
                ``False`` leaves the database as it is: a missing index is then
                an :class:`~metalab.errors.IndexMissingError`, raised or answered
                from the files by ``on_index_error`` (the CLI's readers).

        Raises:
            MissingDependencyError: psycopg or psycopg_pool is not installed.
            IndexUnavailableError: The server cannot be reached and
                ``config.on_index_error`` is ``"raise"``.
            ExperimentMismatchError: The experiment directory belongs to another
                experiment.
            ConfigError: The index was built from ``config.file_root``, which does
                not exist. (An index built from another root opens, and refuses
                reads and writes until :meth:`rebuild_index`.)
        """
        _optional.require("psycopg", "psycopg_pool", extra="postgres", feature="PostgresStore")
        from metalab.store._postgres_index import PostgresIndex  # noqa: PLC0415 -- optional (postgres extra)

        root = FileStoreConfig(root=config.file_root)
        index = PostgresIndex(
            config.connection_string,
            schema=config.schema,
            min_size=config.pool_min_size,
            max_size=config.pool_max_size,
            connect_timeout=config.connect_timeout,
            pool_timeout=config.pool_timeout,
            file_root=config.file_root,
            pending_on_create=lambda: _claim_root(root),
            create=create_index,
        )
        # The index first: a store that cannot open leaves nothing behind, not even
        # the experiment directory that connecting its files lays down.
        state: IndexState | None = None
        try:
            state = index.open()
        except IndexUnavailableError as exc:
            if config.on_index_error == "raise":
                index.close()
                raise
            _log.warning("%s; reading from the files until sync_index() succeeds", exc)
        except BaseException:
            index.close()
            raise
        if state is not None:
            try:
                check_files_exist(state, config.file_root, _index_name(config))
            except ConfigError:
                index.close()
                raise
        try:
            if files is None:
                files = FileStoreConfig(
                    root=config.file_root, experiment_id=config.experiment_id
                ).connect()
        except BaseException:
            index.close()
            raise
        store = cls(config, files, index)
        try:
            store._learn_index_state(state, file_root=config.file_root)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def from_filestore(
        cls,
        url: str | PostgresStoreConfig,
        filestore: FileStore,
        *,
        rebuild: bool = True,
        **options: Any,
    ) -> PostgresStore:
        """Index an existing FileStore (scoped, standalone or a whole collection).

        Args:
            url: A ``postgresql://`` locator (``file_root`` may be left out; if
                given it must be the FileStore's root) or a config.
            filestore: The FileStore to wrap; it becomes the store's files.
            rebuild: Index its existing records now (``rebuild_index()``).
            **options: Other :class:`PostgresStoreConfig` fields (``schema``, ...).

        Raises:
            ConfigError: ``url`` names another file root or is not a Postgres locator.
            IndexUnavailableError: The server cannot be reached.
        """
        root = filestore.config.root
        fields: dict[str, Any] = {"experiment_id": filestore.config.experiment_id, **options}
        if isinstance(url, PostgresStoreConfig):
            config = dataclasses.replace(url, **fields)
        else:
            info = parse_locator(url)
            if "file_root" not in info.params:
                fields.setdefault("file_root", root)
            config = PostgresStoreConfig.from_locator(info, **fields)
        if config.file_root != root:
            raise ConfigError(
                f"the locator's file_root {config.file_root!r} is not the FileStore's root "
                f"{root!r}; leave file_root out of the locator"
            )
        store = cls.open(config, files=filestore)
        if rebuild:
            try:
                store.rebuild_index()
            except BaseException:
                store.close()
                raise
        return store

    def to_filestore(self, path: str | os.PathLike[str]) -> FileStore:
        """Copy this store's files to a new directory and open them as a FileStore.

        A scoped store becomes a standalone store of its experiment, a collection
        a collection. Only the files are copied (they hold everything).

        Raises:
            ConfigError: ``path`` exists and is not an empty directory.
        """
        self._check_open()
        return self._files.copy_to(path)

    @property
    def config(self) -> PostgresStoreConfig:
        """The config this store was opened with."""
        return self._config

    def __repr__(self) -> str:
        return (
            f"PostgresStore({self._config.redacted_connection_string!r}, "
            f"schema={self._config.schema!r}, file_root={self._config.file_root!r}, "
            f"experiment_id={self._config.experiment_id!r})"
        )

    def __getstate__(self) -> object:
        raise TypeError(
            "a PostgresStore holds a connection pool and cannot be pickled; "
            "pickle its config (store.config) and connect() again"
        )


def _experiments_with_documents(root: FileStoreConfig) -> frozenset[str | None]:
    """The experiments under a file root that already have documents.

    Called when the index tables are created: those experiments need a sync before
    the index can answer for them.
    """
    with root.connect() as files:
        return files.experiments_with_documents()


def _index_name(config: PostgresStoreConfig) -> str:
    return f"the postgres index {config.schema!r} at {config.redacted_connection_string!r}"


def _claim_root(root: FileStoreConfig) -> frozenset[str | None]:
    """Make the root of a new index's files; return the experiments that need a sync.

    Called while the index's tables are created, before they are committed: any store
    that then finds the index finds its root too, so a root gone from under its index
    is told from one not made yet.
    """
    Path(root.root).mkdir(parents=True, exist_ok=True)
    return _experiments_with_documents(root)
