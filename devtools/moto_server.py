#!/usr/bin/env python3
"""moto_server for the local stack, with DynamoDB requests serialised and two
emulator hot spots made linear (transaction rollback, SQS retention checks,
DynamoDB queries).

moto 5.2.1's server is threaded, and its DynamoDB backend is not thread-safe:
concurrent TransactWriteItems deep-copy tables while another request mutates
them ("RuntimeError: dictionary changed size during iteration" -> an HTML 500
the SDK cannot parse). Real DynamoDB has no such failure, so the local stack
runs DynamoDB calls one at a time (they take milliseconds). Everything else
stays concurrent, so SQS long polling does not hold up other services.

Usage: python3 devtools/moto_server.py [-H 127.0.0.1] [-p 5000]
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any, Callable, Iterable

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


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


class SerialiseDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = FairLock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(("DynamoDB_", "DynamoDBStreams_")):
            return self.app(environ, start_response)
        with self.lock:
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = ap.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    # State is in memory only: exit at once, without waiting for open
    # keep-alive connections.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    _cheap_transaction_rollback()
    _cheap_sqs_retention_check()
    _partition_scoped_query()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerialiseDynamoDB(app), threaded=True)


if __name__ == "__main__":
    main()
