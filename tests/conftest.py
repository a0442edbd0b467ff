"""Fixtures shared by the whole suite: a real server on 127.0.0.1:0 with a registered unit and
operator, and pre-encoded media loops built once per session."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import hypothesis
import pytest
import uvloop
from aiohttp import web
from aiohttp.test_utils import TestServer

from dispatch_server.app import create_app
from dispatch_server.appkeys import ACCOUNTS, AUTH
from dispatch_server.auth import hash_token, new_token
from dispatch_server.config import Settings, load_settings
from dispatch_server.http.connection_guard import GuardedRunner, GuardedServer
from field_client.encoded_loop import EncodedAudioLoop, EncodedLoop, VideoLoopSpec
from media import passthrough
from recordings.ledger import Ledger
from tests.ledger_spec import archive_problems, problems_of
from tests.support.postgres_server import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.secrets import SecretWatch, remember

OPERATOR_PASSWORD = "operator-pass-1"

# Property tests draw the same examples on every run and machine, so an example that fails is a
# fixed regression case (pin it with @example) rather than a random CI failure. No example
# database (the suite runs with -p no:cacheprovider on clean clones) and no timing-based failures
# (deadline, too_slow) on a shared 2-core machine.
hypothesis.settings.register_profile(
    "suite", derandomize=True, database=None, deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("suite")


@dataclass
class LiveServer:
    """A running in-process server and handles to register and log in."""

    app: web.Application
    url: str
    settings: Settings
    guard: GuardedServer  # the connection guard of its runner (deadlines, per-address cap)

    def add_unit(self, unit_id: str, kind: str = "body") -> str:
        token = remember(new_token())
        self.app[ACCOUNTS].add_unit(unit_id, kind, hash_token(token), time.time())
        return token

    def add_user(self, name: str, role: str, password: str = OPERATOR_PASSWORD) -> None:
        remember(password)
        self.app[ACCOUNTS].add_user(name, role, self.app[AUTH].hash_password(password), time.time())

    async def admin(self) -> str:
        """A session of the administrator ``root`` (created on first use)."""
        if self.app[ACCOUNTS].get_user("root") is None:
            self.add_user("root", "admin")
        return await self.login("root")

    async def login(self, name: str, password: str = OPERATOR_PASSWORD) -> str:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/api/login", json={"username": name, "password": password}) as r:
                assert r.status == 200, await r.text()
                return remember(str((await r.json())["token"]))


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """Every async test runs on uvloop, the server's default event loop (``server.event_loop``)."""
    return {"uvloop": uvloop.new_event_loop}


# DISPATCH_TEST_STORAGE=postgresql runs every in-process server of the suite on PostgreSQL (a fresh
# database each); by default they run on SQLite, and the tests that take ``engine`` run on both.
_ALL_ON_POSTGRES: list[PostgresServer] = []


def settings_for(tmp: Path, **sections: dict[str, Any]) -> Settings:
    # In-process servers run media in their own process (media workers are children: tested with
    # real ``serve`` processes, tests/dispatch_server/test_media_workers.py and test_demo.py).
    overrides: dict[str, dict[str, Any]] = {"storage": {"data_dir": str(tmp / "data")}, "server": {"port": 0},
                                            "metrics": {"port": 0}, "media": {"workers": 0}}
    if _ALL_ON_POSTGRES and "url" not in sections.get("storage", {}):
        overrides["storage"]["url"] = _ALL_ON_POSTGRES[0].fresh_database()
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(None, env={}, overrides=overrides)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (Debian's ``initdb``/``pg_ctl``), for the whole session."""
    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database of :func:`postgres_server`."""
    return postgres_server.fresh_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run a test on each storage engine: the ``storage`` settings section to pass on."""
    if request.param == "sqlite":
        return {}
    return {"url": request.getfixturevalue("postgres_url")}


@pytest.fixture
def storage_engine(request: pytest.FixtureRequest) -> str:
    """The engine of a test marked ``both_engines`` (parametrized by :func:`pytest_generate_tests`):
    ``make_live`` starts its servers on it."""
    return str(request.param)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``both_engines`` (a module's ``pytestmark`` or the test's own) runs once on
    SQLite and once on PostgreSQL: every server ``make_live``/``live`` starts for it uses that engine."""
    if metafunc.definition.get_closest_marker("both_engines") is None:
        return
    if "storage_engine" not in metafunc.fixturenames:
        metafunc.fixturenames.append("storage_engine")
    metafunc.parametrize("storage_engine", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture(scope="session", autouse=True)
def _suite_on_postgres(request: pytest.FixtureRequest) -> Iterator[None]:
    if os.environ.get("DISPATCH_TEST_STORAGE") == "postgresql":
        _ALL_ON_POSTGRES.append(request.getfixturevalue("postgres_server"))
    yield
    _ALL_ON_POSTGRES.clear()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def mode(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run a live-path test on one node in memory and on a node in Redis mode."""
    if request.param == "memory":
        return {}
    return {"redis": {"url": request.getfixturevalue("redis_url")}}


class GuardedTestServer(TestServer):
    """pytest-aiohttp's server on 127.0.0.1:0, run as ``dispatch-server serve`` runs the app: through
    :class:`GuardedRunner` (head and body deadlines, the per-address cap)."""

    async def _make_runner(self, **kwargs: Any) -> GuardedRunner:
        return GuardedRunner(self.app, **kwargs)


@pytest.fixture
async def guarded_server() -> AsyncIterator[Callable[[web.Application], Awaitable[GuardedTestServer]]]:
    """``await guarded_server(app)``: like pytest-aiohttp's ``aiohttp_server``, closed after the test."""
    servers: list[GuardedTestServer] = []

    async def start(app: web.Application) -> GuardedTestServer:
        server = GuardedTestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    yield start
    while servers:
        await servers.pop().close()


@pytest.fixture
def make_live(guarded_server: Callable[[web.Application], Awaitable[GuardedTestServer]],
              tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``await make_live(media={...})`` → a :class:`LiveServer` on a free port (on PostgreSQL in
    the PostgreSQL run of a ``both_engines`` test: every server of the test shares one database)."""
    on_postgres: list[str] = []
    if "storage_engine" in request.fixturenames and request.getfixturevalue("storage_engine") == "postgresql":
        on_postgres.append(request.getfixturevalue("postgres_url"))

    async def make(clock: Callable[[], float] = time.time, **sections: dict[str, Any]) -> LiveServer:
        if on_postgres and "url" not in sections.get("storage", {}):
            sections = {**sections, "storage": {**sections.get("storage", {}), "url": on_postgres[0]}}
        settings = settings_for(tmp_path, **sections)
        app = create_app(settings, clock=clock)
        server = await guarded_server(app)
        assert isinstance(server.runner, GuardedRunner)
        return LiveServer(app, str(server.make_url("")).rstrip("/"), settings, server.runner.guard)

    return make


@pytest.fixture
async def live(make_live: Callable[..., Any]) -> LiveServer:
    server: LiveServer = await make_live()
    return server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def vp8_loop() -> EncodedLoop:
    passthrough.install()
    return EncodedLoop.build(VideoLoopSpec(codec="vp8", frame_count=60))


@pytest.fixture(scope="session")
def h264_loop() -> EncodedLoop:
    return EncodedLoop.build(VideoLoopSpec(codec="h264", frame_count=60))


@pytest.fixture(scope="session")
def opus_loop() -> EncodedAudioLoop:
    return EncodedAudioLoop.build()


@pytest.fixture(scope="session")
def secret_watch() -> Iterator[SecretWatch]:
    watch = SecretWatch()
    logging.getLogger().addHandler(watch)
    yield watch
    logging.getLogger().removeHandler(watch)


@pytest.fixture(autouse=True)
def no_secret_in_logs(secret_watch: SecretWatch) -> Iterator[None]:
    """Every test fails if a log line of the in-process server printed a token or password."""
    before = len(secret_watch.leaks)
    yield
    assert secret_watch.leaks[before:] == [], "secrets in log lines"


def _observe(collect: str | None, found: list[str], type: str, data: Any) -> None:
    if not isinstance(data, dict):
        return
    if collect:
        nested = {k: sorted(v) for k, v in data.items() if isinstance(v, dict)}
        with open(collect, "a", encoding="utf-8") as f:
            f.write(json.dumps({"type": type, "fields": sorted(data), "nested": nested}) + "\n")
    else:
        found += problems_of(type, data)


@pytest.fixture(autouse=True)
def ledger_spec_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail a test whose code wrote a ledger entry type or field docs/archive-format.md does not
    list (:mod:`tests.ledger_spec`): in-process appends, and every archive under its tmp_path."""
    collect = os.environ.get("LEDGER_SPEC_COLLECT")
    found: list[str] = []
    append, append_many = Ledger.append, Ledger.append_many

    def checked_append(self: Ledger, type: str, **kwargs: Any) -> dict[str, Any]:
        written = append(self, type, **kwargs)  # what the ledger refuses is not written
        _observe(collect, found, type, kwargs.get("data"))
        return written

    def checked_append_many(self: Ledger, items: Any) -> list[dict[str, Any]]:
        written = append_many(self, items)
        for type, _actor, _where, _outcome, data in items:
            _observe(collect, found, type, data)
        return written

    monkeypatch.setattr(Ledger, "append", checked_append)
    monkeypatch.setattr(Ledger, "append_many", checked_append_many)
    tmp = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if tmp is not None:
        if collect:
            for entries in tmp.rglob("ledger/entries.jsonl"):
                for line in entries.read_bytes().splitlines():
                    try:
                        entry = json.loads(line)
                        _observe(collect, found, entry["type"], entry["data"])
                    except (ValueError, KeyError, TypeError):
                        continue
        else:
            found += archive_problems([tmp])
    if found:
        unique = sorted(set(found))
        pytest.fail("the code wrote ledger entries docs/archive-format.md does not specify:\n" + "\n".join(unique))
