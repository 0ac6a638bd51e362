#!/usr/bin/env python3
"""moto_server for the local stack, with DynamoDB requests serialised and two
emulator hot spots made linear (transaction rollback, SQS retention checks,
DynamoDB queries), and TransactWriteItems' idempotency token honoured as
DynamoDB honours it.

moto 5.2.1's server is threaded, and its DynamoDB backend is not thread-safe:
concurrent TransactWriteItems deep-copy tables while another request mutates
them ("RuntimeError: dictionary changed size during iteration" -> an HTML 500
the SDK cannot parse). Real DynamoDB has no such failure, so the local stack
runs DynamoDB calls one at a time (they take milliseconds). Everything else
stays concurrent, so SQS long polling does not hold up other services.

DynamoDB Streams are written as DynamoDB writes them (`_faithful_streams`:
no record for a write that changes nothing or a cancelled transaction, one
INSERT per created item, a fixed stream label that devtools/stack.py renders
too, iterators that expire), and TTL deletes expired items in the background
with a service REMOVE record (`ttl_sweep`, `--ttl-delete-after`).

IAM: with `--iam-policies .local/iam.json` (devtools/local.sh passes it
unless STOCKROOM_IAM_ENFORCEMENT=off) every call signed with a function's
access key is authorised the way AWS would authorise it (devtools/iam.py),
and SNS -> SQS and S3 -> SQS deliveries are checked against the queue policy
and the key policy, as AWS checks them; a refused delivery is dropped, as on
AWS, and logged.

Usage: .venv/bin/python devtools/moto_server.py [-H 127.0.0.1] [-p 5000] [--iam-policies FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam  # noqa: E402  (devtools/iam.py)
import heat  # noqa: E402  (devtools/heat.py)


class FairLock:
    """A FIFO lock: under load every waiter gets its turn in arrival order
    (threading.Lock makes no such promise, so a short GetItem could starve
    behind a stream of batch writes)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> "FairLock":
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class TransactionTokens:
    """TransactWriteItems' ClientRequestToken, as DynamoDB honours it.

    The SDK puts a token on every TransactWriteItems call and keeps it across
    its retries. DynamoDB answers a repeat of a call that succeeded, within 10
    minutes, with success and changes nothing; the same token with other
    parameters is IdempotentParameterMismatchException. moto ignores the
    token, so a retry after a lost answer (the fault proxy's `drop_after`)
    would run the transaction again and fail its own conditions: a failure
    AWS never returns. Runs inside the DynamoDB lock (calls are serialised).
    """

    TARGET = "DynamoDB_20120810.TransactWriteItems"
    VALID_SECONDS = 600

    def __init__(self, app: Callable[..., Iterable[bytes]], clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.clock = clock
        # token -> (parameters, when, status, headers, body) of a call that
        # succeeded, oldest first: expiry pops from the front only.
        self.done: OrderedDict[str, tuple[str, float, str, list[tuple[str, str]], bytes]] = OrderedDict()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET") != self.TARGET:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            return self.app(environ, start_response)
        token = request.pop("ClientRequestToken", None) if isinstance(request, dict) else None
        if not isinstance(token, str):
            return self.app(environ, start_response)
        now = self.clock()
        while self.done and now - next(iter(self.done.values()))[1] >= self.VALID_SECONDS:
            self.done.popitem(last=False)
        parameters = json.dumps(request, sort_keys=True)
        if token in self.done:
            seen, _, status, headers, body = self.done[token]
            if seen != parameters:
                body = json.dumps(
                    {
                        "__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                        "message": "The request uses the same client token as a previous, but non-identical request.",
                    }
                ).encode()
                start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
                return [body]
            start_response(status, headers)
            return [body]
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            answer["status"], answer["headers"] = status, list(headers)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = b"".join(self.app(environ, capture))
        if answer.get("status", "").startswith("200"):
            self.done[token] = (parameters, now, answer["status"], answer["headers"], body)
        return [body]


GET_RECORDS = "DynamoDBStreams_20120810.GetRecords"


def fast_get_records(raw: bytes) -> bytes | None:
    """GetRecords answered from the backend with `json.dumps`.

    moto 5.2.1 serialises GetRecords through its botocore-shape serialiser,
    about 2.5 ms per record: a stream poller reading a 100,000-record batch's
    changes held the (serialised) DynamoDB backend for minutes. The answer is
    the same document (`ApproximateCreationDateTime` in epoch seconds, as the
    JSON protocol has it). None: let moto answer (errors, anything unusual).
    """
    from moto.dynamodbstreams.models import dynamodbstreams_backends

    try:
        request = json.loads(raw or b"{}")
        iterator = request["ShardIterator"]
        limit = int(request.get("Limit") or 1000)
        # <table arn>/stream/<label>|1|<id>: arn:aws:dynamodb:<region>:<account>:table/...
        _, _, _, region, account = iterator.split(":", 5)[:5]
        result = dynamodbstreams_backends[account][region].get_records(iterator, limit)
        records = []
        for record in result["Records"]:
            d = dict(record["dynamodb"])
            when = d.get("ApproximateCreationDateTime")
            if hasattr(when, "timestamp"):
                d["ApproximateCreationDateTime"] = int(when.timestamp())
            records.append({**record, "dynamodb": d})
        return json.dumps({"Records": records, "NextShardIterator": result["NextShardIterator"]}).encode()
    except Exception:  # noqa: BLE001 - moto's own path answers (and words) the error
        return None


class SerialiseDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = TransactionTokens(app)
        self.lock = FairLock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(("DynamoDB_", "DynamoDBStreams_")):
            return self.app(environ, start_response)
        raw = b""
        if target == GET_RECORDS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
        with self.lock:
            if target == GET_RECORDS and (body := fast_get_records(raw)) is not None:
                start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0"),
                                          ("Content-Length", str(len(body)))])
                return [body]
            # Materialise the body inside the lock: the backend runs lazily.
            return list(self.app(environ, start_response))


def _cheap_transaction_rollback() -> None:
    """Make TransactWriteItems cost what the transaction touches.

    moto backs up every table a transaction names with a deepcopy of the whole
    table, so each transaction gets slower as the table grows (seconds per
    call at tens of thousands of items). Back up only the items the actions
    address instead, and restore those on failure: the same all-or-nothing
    outcome (DynamoDB calls are serialised above, so nothing interleaves).
    """
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    class _KeepTables:
        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(obj: Any, memo: Any = None) -> Any:
            return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)

    models.copy = _KeepTables()  # type: ignore[attr-defined]
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                if op_type == "Put":
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(op["TableName"], key)
            except Exception:  # invalid action: moto itself will reject it
                continue
            attrs = copy.deepcopy(current.to_json()["Attributes"]) if current else None
            backups.append((op["TableName"], key, attrs))
        try:
            return original(self, transact_items)
        except Exception:
            for table_name, key, attrs in reversed(backups):
                if attrs is None:
                    try:
                        self.delete_item(table_name, key)
                    except Exception:
                        pass
                else:
                    self.put_item(table_name, attrs)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def _fifo_order_after_a_timeout() -> None:
    """Receives from a FIFO queue as SQS does, on two counts moto 5.2.1 gets
    wrong:

    * a group whose messages all came back after a visibility timeout is
      handed out from its first message (moto forgot a message's in-flight
      state only when its receive loop reached it, so it skipped each one
      while a later one still looked in flight and handed out the group's
      last message first);
    * a long poll on a queue whose visible messages all wait behind an
      in-flight one of their group waits (moto's loop woke at once because
      messages were visible, and spun a core for the whole 20 s).
    """
    import inspect

    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message
    params = list(inspect.signature(original).parameters)[1:]

    def receive_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = dict(zip(params, args))
        bound.update(kwargs)
        try:
            queue = self.get_queue(bound["queue_name"])
        except Exception:  # noqa: BLE001 - moto words the error
            return original(self, *args, **kwargs)
        deadline = time.monotonic() + float(bound.get("wait_seconds_timeout") or 0)
        while True:
            for message in [m for m in queue.pending_messages if m.visible]:
                queue.pending_messages.remove(message)
            result = original(self, **{**bound, "wait_seconds_timeout": 0})
            left = deadline - time.monotonic()
            if result or left <= 0:
                return result
            if queue.messages:
                # Visible but held behind their groups: look again shortly.
                time.sleep(min(0.1, left))
            else:
                queue.wait_for_messages(min(1.0, left))

    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def _cheap_sqs_retention_check() -> None:
    """Make ReceiveMessage cost what the queue holds, not its square.

    For every candidate message moto asks the queue for all its attributes
    (which counts every message) just to read MessageRetentionPeriod: a
    receive on a queue of n messages costs n², and a few thousand queued
    chunks (a large batch) saturate the emulator. Read the one attribute.
    """
    import moto.sqs.models as sqs
    from moto.core.utils import unix_time

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        queue = self.get_queue(queue_name)
        return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()

    sqs.SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


def _partition_scoped_query() -> None:
    """Make a DynamoDB Query cost its partition, not the whole table sorted.

    moto's Query starts from `all_items()`, which lists and sorts every item
    of the table, then keeps the ones of the queried partition: once a large
    import has written a few hundred thousand items, every Query (a batch's
    failures page, a key listing) takes seconds and the emulator stalls.
    Query sorts its own candidates afterwards, so inside a Query hand it the
    queried partition (table queries) or the items unsorted (index queries).
    DynamoDB calls are serialised above, so a per-table flag is enough.
    """
    from moto.dynamodb.models.table import Table

    original_query = Table.query
    original_all_items = Table.all_items

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        self._stockroom_query = ("index", None) if index_name else ("table", hash_key)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            self._stockroom_query = None

    def all_items(self: Any) -> list[Any]:
        scope = getattr(self, "_stockroom_query", None)
        if scope is None:
            return original_all_items(self)
        kind, hash_key = scope
        if kind == "table":
            if hash_key is None or hash_key not in self.items:
                return []
            partition = self.items[hash_key]
            return list(partition.values()) if self.range_key_attr else [partition]
        if self.range_key_attr:
            return [item for partition in self.items.values() for item in partition.values()]
        return list(self.items.values())

    Table.query = query  # type: ignore[method-assign]
    Table.all_items = all_items  # type: ignore[method-assign]


# The label of every table stream (`<table arn>/stream/<label>`). AWS labels
# a stream with its creation time; moto with the creation time too, which
# the rendered stack (devtools/stack.py, `Fn::GetAtt <Table>.StreamArn`, so
# the functions' IAM policies and the event source mappings) cannot know.
# Both use this one instead.
STREAM_LABEL = "2026-01-01T00:00:00.000"
# AWS: a shard iterator expires 15 minutes after it is returned.
SHARD_ITERATOR_SECONDS = 15 * 60
# AWS: TTL never deletes items whose expiry is more than five years past.
TTL_IGNORED_AFTER_SECONDS = 5 * 365 * 24 * 3600
# GetRecords spelling (the Lambda event says `type` / `principalId`).
TTL_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}


def _faithful_streams(clock: Callable[[], float] = time.monotonic) -> None:
    """DynamoDB Streams as DynamoDB writes them (moto 5.2.1 differs):

    * a write that changes nothing (PutItem of the same item, UpdateItem
      setting the values it has) writes no stream record (moto: a MODIFY);
    * an UpdateItem creating an item writes one INSERT (moto: two, the first
      with the keys only);
    * a TransactWriteItems that is cancelled writes nothing (moto applies the
      actions one by one and, with `_cheap_transaction_rollback`, restores the
      items with more writes: a failed transaction wrote up to 2 records per
      action that never happened);
    * records say `eventVersion` 1.1, `ApproximateCreationDateTime` rounded
      down to the second;
    * a stream ARN with another label than the table's is
      ResourceNotFoundException (moto ignores the label), an unknown
      iterator ValidationException and one older than 15 minutes
      ExpiredIteratorException (moto: a 500 / valid forever).
    """
    from moto.core.exceptions import JsonRESTError
    from moto.dynamodb.exceptions import ResourceNotFoundException
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamShard, Table
    from moto.dynamodbstreams import models as streams

    original_set = Table.set_stream_specification

    def set_stream_specification(self: Any, spec: Any) -> None:
        original_set(self, spec)
        if self.latest_stream_label:
            self.latest_stream_label = STREAM_LABEL

    Table.set_stream_specification = set_stream_specification  # type: ignore[method-assign]

    original_add = StreamShard.add

    def add(self: Any, old: Any, new: Any) -> None:
        # Item equality (keys and typed attributes): no JSON built per write.
        if old is not None and new is not None and old == new:
            return
        before = len(self.items)
        original_add(self, old, new)
        if len(self.items) > before:
            record = self.items[-1].record
            record["eventVersion"] = "1.1"
            d = record["dynamodb"]
            d["ApproximateCreationDateTime"] = d["ApproximateCreationDateTime"].replace(microsecond=0)

    StreamShard.add = add  # type: ignore[method-assign]

    def shards_of(backend: Any, names: Iterable[str]) -> list[tuple[Any, int]]:
        out = []
        for name in set(names):
            table = backend.tables.get(name)
            if table is not None and table.stream_shard is not None:
                out.append((table.stream_shard, len(table.stream_shard.items)))
        return out

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        marks = shards_of(self, [table_name])
        result = original_update(self, table_name, *args, **kwargs)
        for shard, n in marks:
            if len(shard.items) > n + 1:  # the keys-only INSERT, then the item's
                del shard.items[n:-1]
                shard.items[-1].record["dynamodb"]["SequenceNumber"] = str(shard.starting_sequence_number + n)
        return result

    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]

    original_transact = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        names = []
        for entry in transact_items:
            for op in entry.values():
                if isinstance(op, dict) and isinstance(op.get("TableName"), str):
                    names.append(op["TableName"])
        marks = shards_of(self, names)
        try:
            return original_transact(self, transact_items)
        except Exception:
            # Nothing happened: no record (the items were restored).
            for shard, n in marks:
                del shard.items[n:]
            raise

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]

    original_table_from_arn = streams.DynamoDBStreamsBackend._get_table_from_arn

    def table_from_arn(self: Any, arn: str) -> Any:
        try:
            table = original_table_from_arn(self, arn)
        except (IndexError, ResourceNotFoundException):
            table = None
        label = arn.split("/stream/", 1)[1] if "/stream/" in arn else None
        if table is None or not table.latest_stream_label or label != table.latest_stream_label:
            raise ResourceNotFoundException(f"Requested resource not found: Stream: {arn} not found")
        return table

    streams.DynamoDBStreamsBackend._get_table_from_arn = table_from_arn  # type: ignore[method-assign]

    original_iterator_init = streams.ShardIterator.__init__

    def iterator_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_iterator_init(self, *args, **kwargs)
        self.created = clock()

    streams.ShardIterator.__init__ = iterator_init  # type: ignore[method-assign]

    def get_records(self: Any, iterator_arn: str, limit: int) -> dict[str, Any]:
        now = clock()
        # Forget expired iterators (moto keeps every one: one per GetRecords).
        if len(self.shard_iterators) > 1000:
            for k in [k for k, v in self.shard_iterators.items() if now - v.created > 2 * SHARD_ITERATOR_SECONDS]:
                del self.shard_iterators[k]
        iterator = self.shard_iterators.get(iterator_arn)
        if iterator is None:
            raise JsonRESTError("ValidationException", "Invalid ShardIterator")
        if now - iterator.created > SHARD_ITERATOR_SECONDS:
            raise JsonRESTError(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created {int(now - iterator.created)} seconds ago",
            )
        return iterator.get(limit)

    streams.DynamoDBStreamsBackend.get_records = get_records  # type: ignore[method-assign]


def _expired(item: Any, attr: str, now: float, delete_after: float) -> bool:
    v = item.attrs.get(attr)
    if v is None or v.type != "N":
        return False
    try:
        at = float(v.value)
    except ValueError:
        return False
    return at + delete_after <= now and at >= now - TTL_IGNORED_AFTER_SECONDS


def _delete_expired(table: Any, item: Any) -> None:
    shard = table.stream_shard
    n = len(shard.items) if shard is not None else 0
    table.delete_item(item.hash_key, item.range_key)
    if shard is not None and len(shard.items) > n:
        shard.items[-1].record["userIdentity"] = dict(TTL_IDENTITY)


def _ttl_tables() -> list[tuple[Any, str]]:
    from moto.dynamodb.models import dynamodb_backends

    out = []
    for account in list(dynamodb_backends.keys()):
        for backend in list(dynamodb_backends[account].values()):
            for table in list(backend.tables.values()):
                ttl = table.ttl or {}
                if ttl.get("TimeToLiveStatus") == "ENABLED" and ttl.get("AttributeName"):
                    out.append((table, ttl["AttributeName"]))
    return out


def _items_of(table: Any, hash_key: Any) -> list[Any]:
    held = table.items.get(hash_key)
    if held is None:
        return []
    return list(held.values()) if table.has_range_key else [held]


def ttl_sweep(now: float, delete_after: float) -> int:
    """Delete the items whose TTL attribute (a Number, epoch seconds) is more
    than `delete_after` seconds past, as DynamoDB's TTL does in the background:
    a REMOVE stream record with `userIdentity` {Service,
    dynamodb.amazonaws.com}. Items whose expiry is over five years past, or
    whose attribute is not a Number, are left alone (as AWS leaves them).
    Call under the DynamoDB lock. Returns the number deleted."""
    deleted = 0
    for table, attr in _ttl_tables():
        for hash_key in list(table.items.keys()):
            for item in _items_of(table, hash_key):
                if _expired(item, attr, now, delete_after):
                    _delete_expired(table, item)
                    deleted += 1
    return deleted


# Partitions looked at per hold of the DynamoDB lock: a sweep of a big table
# must not stall every other call (the lock serialises the backend).
TTL_SWEEP_CHUNK = 2000


def ttl_sweep_chunked(lock: Any, now: float, delete_after: float) -> int:
    """`ttl_sweep` in short holds of `lock`, partition by partition."""
    deleted = 0
    with lock:
        plan = [(table, attr, list(table.items.keys())) for table, attr in _ttl_tables()]
    for table, attr, keys in plan:
        for start in range(0, len(keys), TTL_SWEEP_CHUNK):
            with lock:
                for hash_key in keys[start:start + TTL_SWEEP_CHUNK]:
                    for item in _items_of(table, hash_key):
                        if _expired(item, attr, now, delete_after):
                            _delete_expired(table, item)
                            deleted += 1
    return deleted


def _ttl_sweeper(lock: Any, every: float, delete_after: float) -> None:
    def run() -> None:
        while True:
            time.sleep(every)
            try:
                n = ttl_sweep_chunked(lock, time.time(), delete_after)
                if n:
                    _log({"ttl": "expired items deleted", "count": n})
            except Exception as exc:  # keep sweeping; the log says why
                _log({"ttl": "sweep failed", "error": repr(exc)})

    threading.Thread(target=run, name="ttl-sweeper", daemon=True).start()


def _credential_scope(environ: dict[str, Any], query: dict[str, list[str]]) -> list[str]:
    """`<access key>/<date>/<region>/<service>/aws4_request`, from the
    Authorization header or a presigned URL's X-Amz-Credential."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        return auth.split("Credential=", 1)[1].split(",", 1)[0].strip().split("/")
    cred = (query.get("X-Amz-Credential") or [""])[0]
    return cred.split("/") if cred else []


def _log(event: dict[str, Any]) -> None:
    print(json.dumps(event, separators=(",", ":")), file=sys.stderr, flush=True)


class EnforceIam:
    """Authorises every call signed with a function's access key (see
    devtools/iam.py) and answers a refused one as the service does."""

    def __init__(self, app: Callable[..., Iterable[bytes]], enforcer: iam.Enforcer):
        self.app = app
        self.enforcer = enforcer

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/_stockroom/iam":
            body = json.dumps(self.enforcer.report()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        scope = _credential_scope(environ, query)
        who = self.enforcer.principal_for(scope[0]) if scope else None
        if who is None:
            return self.app(environ, start_response)
        service = scope[3] if len(scope) > 3 else ""
        raw = b""
        if service != "s3":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        params: dict[str, Any] = {}
        if target:
            operation = target.rsplit(".", 1)[-1]
            try:
                params = json.loads(raw or b"{}")
            except ValueError:
                params = {}
        elif service == "s3":
            operation = environ.get("REQUEST_METHOD", "GET")
        else:
            form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
            params = {k: v[0] for k, v in form.items()}
            operation = params.get("Action", "")
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        needs = self.enforcer.needs(
            service, operation, params, headers, environ.get("PATH_INFO", ""),
            environ.get("REQUEST_METHOD", "GET"), query,
        )
        try:
            self.enforcer.check(who, needs)
        except iam.Denied as denied:
            _log({"iam": "denied", "function": who["function"], "operation": f"{service}:{operation}",
                  "action": denied.need.action, "resource": denied.need.resource, "message": str(denied)})
            return _denied(service, denied, start_response)
        return self.app(environ, start_response)


def _denied(service: str, denied: iam.Denied, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The refusal each service sends (status, error code, body shape)."""
    message = str(denied)
    kms = denied.need.kms
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id)]
    if service == "sns":
        code, status = ("KMSAccessDenied", "400 Bad Request") if kms else ("AuthorizationError", "403 Forbidden")
        body = (
            '<ErrorResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        headers.append(("Content-Type", "text/xml"))
    elif service == "s3":
        status = "403 Forbidden"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            f"<Message>{_xml(message)}</Message><RequestId>{request_id}</RequestId></Error>"
        )
        headers.append(("Content-Type", "application/xml"))
    elif service == "sqs":
        status = "400 Bad Request"
        if kms:
            payload = {"__type": "com.amazonaws.sqs#KmsAccessDenied", "message": message}
            headers.append(("x-amzn-query-error", "KMS.AccessDeniedException;Sender"))
        else:
            payload = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
            headers.append(("x-amzn-query-error", "AccessDenied;Sender"))
        body = json.dumps(payload)
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
    elif service == "kms":
        status = "400 Bad Request"
        body = json.dumps({"__type": "AccessDeniedException", "message": message})
        headers.append(("Content-Type", "application/x-amz-json-1.1"))
    else:  # dynamodb and the other JSON services
        status = "400 Bad Request"
        body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message})
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
    data = body.encode()
    headers.append(("Content-Length", str(len(data))))
    start_response(status, headers)
    return [data]


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _service_deliveries_checked(enforcer: iam.Enforcer) -> None:
    """SNS -> SQS and S3 -> SQS deliveries need what AWS needs: the queue
    policy must let the service principal send (for this source), and the
    queue's key policy must let it use the key. A refused delivery is dropped
    (AWS drops it too) and logged."""
    import moto.s3.notifications as s3_notifications
    import moto.sns.models as sns_models

    def allowed(service_principal: str, queue_arn: str, source_arn: str) -> bool:
        needs = enforcer.delivery_needs(service_principal, source_arn, "sqs:SendMessage", queue_arn)
        try:
            enforcer.check(None, needs, service_principal)
            return True
        except iam.Denied as denied:
            _log({"iam": "delivery dropped", "principal": service_principal, "source": source_arn,
                  "action": denied.need.action, "resource": denied.need.resource, "message": str(denied)})
            return False

    original_publish = sns_models.Subscription.publish

    def publish(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.protocol == "sqs" and not allowed("sns.amazonaws.com", self.endpoint, self.topic.arn):
            return None
        return original_publish(self, *args, **kwargs)

    sns_models.Subscription.publish = publish  # type: ignore[method-assign]

    original_send = s3_notifications._send_sqs_message

    def send_sqs_message(account_id: str, event_body: Any, queue_name: str, region_name: str) -> None:
        try:
            bucket = event_body["Records"][0]["s3"]["bucket"]["name"]
        except (KeyError, IndexError, TypeError):
            bucket = (event_body or {}).get("Bucket", "")
        queue_arn = f"arn:aws:sqs:{region_name}:{account_id}:{queue_name}"
        if allowed("s3.amazonaws.com", queue_arn, f"arn:aws:s3:::{bucket}"):
            original_send(account_id, event_body, queue_name, region_name)

    s3_notifications._send_sqs_message = send_sqs_message  # type: ignore[assignment]


def _live_queue_policies(enforcer: iam.Enforcer) -> None:
    """Queues created at run time (a tenant's own queue subscribed to the
    events topic) carry their policy in moto, set with CreateQueue or
    SetQueueAttributes: that is the one AWS evaluates for them."""
    from moto.sqs.models import sqs_backends

    def live_policy(arn: str) -> dict[str, Any] | None:
        if not arn.startswith("arn:aws:sqs:"):
            return None
        _, _, _, region, account, name = arn.split(":", 5)
        try:
            policy = sqs_backends[account][region].get_queue(name).policy
        except Exception:  # no such queue: moto answers the call itself
            return None
        return json.loads(policy) if policy else None

    enforcer.live_policy = live_policy


class HeatEndpoint:
    """`/_stockroom/heat`: GET the figures (devtools/heat.py); POST
    `/start` (clears them) and `/stop` turn recording on and off."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_stockroom/heat"):
            return self.app(environ, start_response)
        if path == "/_stockroom/heat/start" and environ.get("REQUEST_METHOD") == "POST":
            heat.HEAT.start()
        elif path == "/_stockroom/heat/stop" and environ.get("REQUEST_METHOD") == "POST":
            heat.HEAT.stop()
        elif path != "/_stockroom/heat":
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        body = json.dumps(heat.HEAT.report()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    ap.add_argument("--iam-policies", help="enforce IAM as AWS does, with this .local/iam.json")
    ap.add_argument("--ttl-sweep-seconds", type=float,
                    default=float(os.environ.get("STOCKROOM_TTL_SWEEP_SECONDS", 60)),
                    help="delete expired TTL items this often (0: never, as moto) [60]")
    ap.add_argument("--ttl-delete-after", type=float,
                    default=float(os.environ.get("STOCKROOM_TTL_DELETE_AFTER_SECONDS", 30)),
                    help="seconds past its expiry before an item is deleted (AWS: typically days) [30]")
    args = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # State is in memory only: exit at once, without waiting for open
    # keep-alive connections.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    _cheap_transaction_rollback()
    _cheap_sqs_retention_check()
    _fifo_order_after_a_timeout()
    _partition_scoped_query()
    _faithful_streams()
    heat.install()
    serialised = SerialiseDynamoDB(DomainDispatcherApplication(create_backend_app))
    if args.ttl_sweep_seconds > 0:
        _ttl_sweeper(serialised.lock, args.ttl_sweep_seconds, args.ttl_delete_after)
    app: Callable[..., Iterable[bytes]] = serialised
    if args.iam_policies:
        enforcer = iam.Enforcer(Path(args.iam_policies))
        _service_deliveries_checked(enforcer)
        _live_queue_policies(enforcer)
        app = EnforceIam(app, enforcer)
        _log({"iam": "enforced", "policies": args.iam_policies, "functions": len(enforcer.doc["principals"])})
        for problem in enforcer.check_deliveries():
            _log({"iam": "undeliverable", "message": problem})
    run_simple(args.host, args.port, HeatEndpoint(app), threaded=True)


if __name__ == "__main__":
    main()
