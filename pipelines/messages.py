"""The stage message: a protocol-2 task message with only the fields a worker, Flower or
our code reads. Every stage is sent this way: the first one by ``publish_chain``
(``pipelines.dispatch``), each later one by the stage before it as it succeeds
(``send_next_stage``, in place of Celery's chain continuation).

``apply_async`` writes every header and property Celery knows, most of them empty: ``eta``,
``expires``, ``group``, ``shadow``, ``stamps``..., ``timelimit`` (the worker applies its
own stage limits, ``app.celery_app.task_annotations``), ``origin``, ``ignore_result`` (the
stage tasks ignore results), and the ``reply_to`` and ``correlation_id`` only an RPC
result backend reads; the body's empty ``callbacks``, ``errbacks`` and ``chord``. A worker
reads each of them with a default. What stays: ``task``, ``id``, ``root_id``,
``parent_id`` (a later stage), the ``argsrepr`` and ``kwargsrepr`` that Flower shows (the
run and issue ids), ``lang``; the body's args, kwargs and the rest of the chain. Building
it costs a fraction of ``apply_async``'s CPU (``Signature`` objects, routing, every
option merged), and a chain pays it at every stage.

Celery's ``send_task_message`` still sends it: it applies the publish retry policy, sends
``task-sent`` when ``task_send_sent_event`` is on and fires the publish signals (tracing
injects its context there, the task metrics count it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from celery.app.amqp import task_message
from celery.utils.saferepr import saferepr
from kombu import Connection

from pipelines.queues import TASK_ROUTES

# The key of a later stage's argument (the result of the one before, a dict) that carries
# the earlier stages' finishes written behind (``pipelines.marks.Finish.row``): the stage
# that receives it writes them with its first statement.
FINISHED_KEY = "issueflow_finished"

# Celery's own bound on ``argsrepr`` (a later stage takes the result of the one before).
ARGSREPR_MAX = 1024
# The keys of a chain step (``celery.Signature`` as a dict) a slim step may have; a step
# with anything else (a canvas built elsewhere: immutable, a queue, a countdown...) is left
# to Celery's own continuation.
_STEP_KEYS = frozenset({"task", "args", "kwargs", "options", "subtask_type", "immutable"})


def chain_step(task_name: str, task_id: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A later stage as the message's ``chain`` holds it: ``celery.Signature`` as a dict,
    with only the keys Celery reads (``subtask_type`` and ``immutable`` default to None)."""
    return {"task": task_name, "args": [], "kwargs": kwargs, "options": {"task_id": task_id}}


def carried_finishes(args: Sequence[Any]) -> list[dict[str, Any]] | None:
    """The finishes a stage's message carries (``send_next_stage``), if any."""
    previous = args[0] if args else None
    if not isinstance(previous, dict):
        return None
    finished = previous.get(FINISHED_KEY)
    return finished if isinstance(finished, list) and finished else None


def is_slim_step(step: Any) -> bool:
    """A step ``send_next_stage`` can send as it is: the form ``chain_step`` writes."""
    return (
        isinstance(step, dict)
        and step.keys() <= _STEP_KEYS
        and not step.get("args")
        and not step.get("immutable")
        and step.get("subtask_type") is None
        and isinstance(step.get("options"), dict)
        and step["options"].keys() == {"task_id"}
        and step.get("task") in TASK_ROUTES
    )


def send_stage(
    app: Celery,
    *,
    name: str,
    task_id: str,
    root_id: str,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    chain: Sequence[dict[str, Any]],
    parent_id: str | None = None,
    connection: Connection | None = None,
) -> None:
    """Send one stage, the rest of its chain (last stage first) in its body, to the queue
    its task is routed to. ``connection``: a broker connection of the caller's, else one
    of the app's pool."""
    argsrepr = saferepr(args, ARGSREPR_MAX) if args else "()"
    kwargsrepr = repr(kwargs)
    headers = {
        "lang": "py",
        "task": name,
        "id": task_id,
        "root_id": root_id,
        "argsrepr": argsrepr,
        "kwargsrepr": kwargsrepr,
    }
    if parent_id is not None:
        headers["parent_id"] = parent_id
    embed = {"chain": list(chain)} if chain else {}
    sent_event = (
        {
            "uuid": task_id,
            "root_id": root_id,
            "parent_id": parent_id,
            "name": name,
            "args": argsrepr,
            "kwargs": kwargsrepr,
            "retries": 0,
            "eta": None,
            "expires": None,
        }
        if app.conf.task_send_sent_event
        else None
    )
    message = task_message(headers, {}, (args, dict(kwargs), embed), sent_event)
    producer = app.amqp.Producer(connection, auto_declare=False) if connection else None
    with (
        app.producer_or_acquire(producer) as pooled,
        pooled.connection._reraise_as_library_errors(),
    ):
        app.amqp.send_task_message(
            pooled,
            name,
            message,
            queue=TASK_ROUTES[name]["queue"],
            declare=_declare(pooled.connection),
        )


def _declare(connection: Connection) -> list[Any] | None:
    """What a publish declares first: Celery's default (the queue: None), or nothing on
    Redis.

    A stage goes to the anonymous exchange, routed by its queue's name; on Redis that is an
    LPUSH onto the list of that name (kombu's ``Channel.basic_publish``), which no binding
    and no declaration changes. Kombu's ``maybe_declare`` would find the queue declared
    already, yet it copies and binds the ``Queue`` first, on every publish: some 15-20 %
    of a publish's CPU. On RabbitMQ the declaration stays: a message routed to a queue
    that does not exist yet is dropped.
    """
    return [] if connection.transport.driver_type == "redis" else None


def send_next_stage(
    app: Celery, request: Any, result: Any, finished: list[dict[str, Any]] | None = None
) -> bool:
    """Send the next stage of ``request``'s chain with ``result`` as its argument, as
    Celery's chain continuation would (parent and root ids, the publish retry policy of a
    callback), and take the chain off the request so that Celery does not send it again.
    ``finished``: finishes the next stage writes as it begins, under ``FINISHED_KEY`` of
    ``result`` (a dict).

    False, and the request left as it is, when there is no next stage or it is not one
    ``chain_step`` wrote: Celery's own continuation sends it then.
    """
    chain = request.chain
    if not chain or not is_slim_step(chain[-1]):
        return False
    if finished:
        if not isinstance(result, dict):
            return False
        result = {**result, FINISHED_KEY: finished}
    step = chain[-1]
    # Celery's way of sending a chain's next step: a callback's own publish retries.
    app.amqp._retry_publish(  # type: ignore[attr-defined]
        send_stage,
        app,
        name=step["task"],
        task_id=step["options"]["task_id"],
        root_id=request.root_id or request.id,
        parent_id=request.id,
        args=(result,),
        kwargs=step.get("kwargs") or {},
        chain=chain[:-1],
    )
    request.chain = None
    return True
