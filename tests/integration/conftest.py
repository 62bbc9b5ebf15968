"""The real stack for integration tests: the test PostgreSQL database, a private RabbitMQ vhost, and real
Celery worker processes started (and killed) by the tests."""
from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from stackutil import Stack


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


@pytest.fixture
def stack(pg_engine, pg_url, broker_url, tmp_path):
    """Real workers against the emptied test database and a purged private vhost. Tests that submit or run
    jobs in this process pass ``stack.settings`` (the workers' own, built from the same environment)."""
    from jobqueue.celery_app import new_app
    from jobqueue.registry import QUEUES
    st = Stack(pg_url, broker_url, tmp_path)
    app = new_app(broker_url)
    for q in QUEUES:   # messages an earlier test left in this run's vhost
        with app.connection_for_write() as conn:
            try:
                conn.default_channel.queue_purge(q)
            except conn.channel_errors:   # the queue does not exist yet (and the channel is closed)
                pass
    app.close()
    yield st
    st.stop()
