"""Streaming helpers shared by the readers and the loaders."""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterable, Iterator

_END = object()


def read_ahead(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    For pipelines whose stages release the GIL: parsing a file (pyarrow) while the previous chunk is written
    (psycopg2 waiting on the server), inflating gzip (zlib) while the previous block is parsed. The
    producer's exception is re-raised in the consumer at the point it happened; if the consumer stops early (a database error),
    the producer is told to stop and its generator is closed in its own thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put(item):
                    break
            else:
                put(_END)
        except BaseException as exc:   # noqa: BLE001 — handed to the consumer, which re-raises it
            put(exc)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="xpvae-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
