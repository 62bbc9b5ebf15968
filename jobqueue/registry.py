"""The job kinds: which queue runs a kind, its handler and how many attempts it gets. Services register their own.

Each service's ``tasks.py`` calls `register` for its kinds when imported; the runner only looks them up here and
never names a service. Every process that submits or runs jobs imports the services' tasks modules once at
start-up (`xpvae.services.load_services`: the CLI before it submits, each Celery worker, the tests' conftest).

A kind that fans out into shards (its handler calls `jobqueue.runner.fan_out`) also registers
``shard_handler(ctx, shard_row)``, which does one shard's work and marks the shard done in the same transaction
as its rows, and ``summarise(ctx, shards) -> dict``, the job's result once every shard has settled (it may call
``ctx.incomplete``). ``shards_fail_alone``: a shard that fails for good fails alone, its siblings run on and the
job ends partial (an ingest's bad file); otherwise it fails the job at once (an inference shard would fail the
same way everywhere).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from jobqueue.runner import JobContext

QUEUES = ("ingest", "trainer", "inferencer", "analysis")

Handler = Callable[["JobContext"], Any]
ShardHandler = Callable[["JobContext", dict], Any]
Summariser = Callable[["JobContext", list[dict]], dict]


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str
    handler: Handler                        # handler(ctx) -> dict: the job's result
    max_attempts: int = 3
    shard_handler: ShardHandler | None = None
    summarise: Summariser | None = None
    shards_fail_alone: bool = False


# Filled by the services' tasks modules at import; code, not configuration, so one per process is right.
KINDS: dict[str, JobKind] = {}


def register(name: str, queue: str, handler: Handler, *, max_attempts: int = 3,
             shard_handler: ShardHandler | None = None, summarise: Summariser | None = None,
             shards_fail_alone: bool = False) -> JobKind:
    """Register job kind ``name`` on ``queue``. Registering the same kind again with the same parts is a no-op
    (a module imported twice); a different kind under a taken name is a programming error."""
    if queue not in QUEUES:
        raise ValueError(f"job kind {name!r}: unknown queue {queue!r}; queues: {', '.join(QUEUES)}")
    if (shard_handler is None) != (summarise is None):
        raise ValueError(f"job kind {name!r}: a kind with shards needs both shard_handler and summarise")
    kind = JobKind(name, queue, handler, max_attempts, shard_handler, summarise, shards_fail_alone)
    if KINDS.get(name, kind) != kind:
        raise ValueError(f"job kind {name!r} is registered twice, differently")
    KINDS[name] = kind
    return kind


def get(name: str) -> JobKind | None:
    return KINDS.get(name)


def unknown_kind(name: str) -> str:
    """The message for a kind nobody registered (naming the likely cause when nothing is registered at all)."""
    if not KINDS:
        return f"unknown job kind {name!r}: no job kinds registered (call xpvae.services.load_services() first)"
    return f"unknown job kind {name!r}; known: {', '.join(KINDS)}"
