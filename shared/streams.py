"""Streaming helpers shared by the readers and the loaders."""
from __future__ import annotations

import collections
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

_END = object()


def read_ahead(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    For pipelines whose stages release the GIL: parsing a file (pyarrow) while the previous chunk is written
    (psycopg2 waiting on the server), inflating gzip (zlib) while the previous block is parsed. The
    producer's exception is re-raised in the consumer at the point it happened; if the consumer stops early (a
    database error), the producer is told to stop and its generator is closed in its own thread."""
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


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int = 2) -> Iterator[Any]:
    """``map(fn, items)`` on ``workers`` threads, results in input order, at most ``workers + 1`` items in
    flight (bounded memory however long ``items`` is).

    Pays off when ``fn`` spends much of its time outside the GIL (the compiled array parser, numpy, pyarrow):
    one thread's GIL-free part overlaps another's Python part. An exception from ``fn`` is re-raised at
    its item's turn; items not yet started are dropped. If ``items`` itself raises, the results of the items
    before come out first."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pending: collections.deque[Future] = collections.deque()
    it = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xpvae-parse") as pool:
        try:
            while True:
                try:
                    item = next(it)
                except StopIteration:
                    break
                except BaseException:
                    # the source broke (a truncated gzip): what was already submitted still comes out
                    # first, as it would have without threads
                    while pending:
                        yield pending.popleft().result()
                    raise
                pending.append(pool.submit(fn, item))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
