"""The local stack's database URL: the Unix socket when the local PostgreSQL takes us there, TCP otherwise."""
from __future__ import annotations

import sqlalchemy as sa

from xpvae.stack import DEFAULT_DB_URL, PG_SOCKET_DIR, local_database_url


def test_socket_url_is_used_when_it_connects_and_tcp_otherwise(tmp_path):
    url = local_database_url()
    if url != DEFAULT_DB_URL:
        # the socket URL really reaches the same server as the TCP one
        assert f"host={PG_SOCKET_DIR}" in url
        sock = sa.create_engine(sa.engine.make_url(url).set(database="postgres"))
        tcp = sa.create_engine(sa.engine.make_url(DEFAULT_DB_URL).set(database="postgres"))
        try:
            ask = "SELECT system_identifier FROM pg_control_system()"
            with sock.connect() as a, tcp.connect() as b:
                assert a.exec_driver_sql(ask).scalar() == b.exec_driver_sql(ask).scalar()
                assert a.exec_driver_sql("SELECT inet_server_addr()").scalar() is None   # not over TCP
        finally:
            sock.dispose()
            tcp.dispose()
    # no socket there: TCP
    assert local_database_url(str(tmp_path)) == DEFAULT_DB_URL
    # a socket file that refuses us (nothing listens): TCP
    (tmp_path / ".s.PGSQL.5432").touch()
    assert local_database_url(str(tmp_path)) == DEFAULT_DB_URL
