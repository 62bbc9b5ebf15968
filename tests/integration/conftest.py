"""The real stack for integration tests: the test PostgreSQL database, a private RabbitMQ vhost, and real
Celery worker processes started (and killed) by the tests."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker_url():
    """A RabbitMQ vhost of our own, so tests never see another stack's messages."""
    vhost = f"xpvae_test_{uuid.uuid4().hex[:8]}"
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found: the integration tests need a local RabbitMQ (see .ci/run)")
    subprocess.run([ctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], check=True, capture_output=True)
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    subprocess.run([ctl, "delete_vhost", vhost], capture_output=True)


class Stack:
    """Environment + worker processes for one test."""

    def __init__(self, db_url: str, broker: str, home: Path):
        self.env = dict(os.environ, XPVAE_DATABASE_URL=db_url, XPVAE_BROKER_URL=broker, XPVAE_HOME=str(home),
                        XPVAE_RETRY_BACKOFF_S="0.2", XPVAE_DEVICE="cpu", OMP_NUM_THREADS="1",
                        PYTHONUNBUFFERED="1")
        self.home = home
        self.workers: list[subprocess.Popen] = []

    def start_worker(self, queue: str, concurrency: int = 1, pool: str = "solo") -> subprocess.Popen:
        from xpvae.stack import worker_command
        log = open(self.home / f"worker-{queue}-{len(self.workers)}.log", "ab")
        cmd = worker_command(queue, concurrency, ["-P", pool, "-n", f"{queue}{len(self.workers)}@%h"])
        proc = subprocess.Popen(cmd, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def cli(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        res = subprocess.run([sys.executable, "-m", "xpvae.cli", *args], env=self.env, cwd=REPO,
                             capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"xpvae {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.home.glob("worker-*.log")))

    def stop(self) -> None:
        for p in self.workers:
            if p.poll() is None:
                self.kill(p, signal.SIGTERM)


@pytest.fixture
def stack(pg_engine, pg_url, broker_url, tmp_path, monkeypatch):
    """Real workers against the emptied test database and a purged private vhost; settings of this process
    point at the same stack so tests can submit jobs and read the database directly."""
    from db.engine import get_engine
    from shared.settings import get_settings
    st = Stack(pg_url, broker_url, tmp_path)
    for k in ("XPVAE_DATABASE_URL", "XPVAE_BROKER_URL", "XPVAE_HOME", "XPVAE_RETRY_BACKOFF_S", "XPVAE_DEVICE"):
        monkeypatch.setenv(k, st.env[k])
    get_settings.cache_clear()
    get_engine.cache_clear()
    import importlib

    import shared.celery_app
    importlib.reload(shared.celery_app)   # the app reads the broker URL at import
    from shared.celery_app import app
    with app.connection_for_write() as conn:
        for q in ("ingest", "trainer", "inferencer", "analysis"):
            try:
                conn.default_channel.queue_purge(q)
            except Exception:   # the queue does not exist yet
                conn = app.connection_for_write()
    yield st
    st.stop()
    get_settings.cache_clear()
    get_engine.cache_clear()


def wait_for(predicate, timeout: float = 120, interval: float = 0.3, what: str = "condition", stack=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{stack.logs()}" if stack else ""))
