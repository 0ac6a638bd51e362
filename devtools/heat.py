"""Partition heat: the capacity each DynamoDB call of the local stack would
consume on AWS, by partition key, of each table and of each global
secondary index (`stockroom-bench heat` reads it; docs/scaling.md).

DynamoDB limits one partition to 1,000 WCU/s and 3,000 RCU/s, whatever the
table's capacity, and one partition key lives in one partition. The keys
are taken from the calls the backend serves, so no second list of what the
code writes is kept. Units as DynamoDB bills them:

- a write: 1 WCU per KB (rounded up) of the larger of the item before and
  after; 2 per KB in a transaction (a `ConditionCheck` included);
- a GSI: a write that changes an item's index keys or what the index
  projects writes the index too, 1 WCU per KB of what it projects
  (transactions reach indexes as standard writes); a write that changes
  neither (a keys-only index under a quantity change) does not; an item
  that leaves the index, or moves to another index key, deletes its old
  entry as well;
- a read: 1 RCU per 4 KB (rounded up) of each item read by `GetItem` (and
  each of `BatchGetItem`'s), of all items a `Query` page returns; half
  that for a `GetItem` or `BatchGetItem` that asks no `ConsistentRead`
  (eventually consistent, as DynamoDB bills it); a `Query` is counted as
  strongly consistent (the upper bound);
- a write refused by its condition consumes what it would have written, as
  DynamoDB charges; so does a cancelled transaction (an upper bound).

Recording is off until `start` (POST /_stockroom/heat/start, which also
clears the figures), so the other benchmarks do not pay for it.
"""

from __future__ import annotations

import json
import math
import threading
from typing import Any, Callable

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096


class Heat:
    """Units consumed per (table, index, partition key) since `start`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.recording = False
        self.keys: dict[tuple[str, str, str], list[float]] = {}

    def start(self) -> None:
        with self._lock:
            self.keys = {}
            self.recording = True

    def stop(self) -> None:
        with self._lock:
            self.recording = False

    def add(self, table: str, index: str, pk: str, wcu: float = 0, rcu: float = 0) -> None:
        with self._lock:
            units = self.keys.setdefault((table, index, pk), [0.0, 0.0, 0, 0])
            units[0] += wcu
            units[1] += rcu
            units[2] += 1 if wcu else 0
            units[3] += 1 if rcu else 0

    def report(self) -> dict[str, Any]:
        with self._lock:
            return {
                "recording": self.recording,
                "keys": [
                    {"table": t, "index": i, "pk": pk, "wcu": u[0], "rcu": u[1],
                     "writes": u[2], "reads": u[3]}
                    for (t, i, pk), u in sorted(self.keys.items())
                ],
            }


HEAT = Heat()
_local = threading.local()


def write_units(size: int) -> int:
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / READ_UNIT_BYTES))


def _value(attr: Any) -> str:
    """A key attribute's value, from the backend (`DynamoType`) or a
    request (`{"S": ...}`)."""
    value = getattr(attr, "value", attr)
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    return value if isinstance(value, str) else str(value)


def _size(attrs: dict[str, Any]) -> int:
    from moto.dynamodb.models.utilities import bytesize

    return sum(bytesize(k) + v.size() for k, v in attrs.items())


class Entry:
    """What one item holds of a table's partitions: its size, and per GSI it
    appears in, (partition key, projected size, what is projected)."""

    def __init__(self, table: Any, item: Any | None):
        self.size = item.size() if item is not None else 0
        self.indexes: dict[str, tuple[str, int, dict[str, Any]]] = {}
        if item is None:
            return
        for index in getattr(table, "global_indexes", []) or []:
            hash_attr = next((k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"), None)
            if hash_attr is None or hash_attr not in item.attrs:
                continue
            projection = (index.projection or {}).get("ProjectionType", "ALL")
            if projection == "ALL":
                projected = dict(item.attrs)
                size = self.size
            else:
                keep = {table.hash_key_attr, table.range_key_attr}
                keep |= {k["AttributeName"] for k in index.schema}
                if projection == "INCLUDE":
                    keep |= set((index.projection or {}).get("NonKeyAttributes", []))
                projected = {k: v for k, v in item.attrs.items() if k in keep}
                size = _size(projected)
            self.indexes[index.name] = (_value(item.attrs[hash_attr]), size, projected)


def _key_of(table: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None and table.range_key_attr in attrs:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def record_write(table: Any, pk: str, before: Entry, after: Entry | None, transactional: bool) -> None:
    """`after` None: refused, nothing written (no index either)."""
    units = write_units(max(before.size, after.size if after else 0))
    HEAT.add(table.name, "", pk, wcu=units * (2 if transactional else 1))
    if after is None:
        return
    for index, (index_pk, size, projected) in after.indexes.items():
        if before.indexes.get(index, (None, 0, None))[2] != projected:
            HEAT.add(table.name, index, index_pk, wcu=write_units(size))
    for index, (index_pk, size, _) in before.indexes.items():
        if after.indexes.get(index, (None, 0, None))[0] != index_pk:
            HEAT.add(table.name, index, index_pk, wcu=write_units(size))


def _quiet() -> bool:
    """Not recording, or inside a write being recorded (the backend's own
    reads and writes within it are the write's)."""
    return not HEAT.recording or getattr(_local, "inside", False)


def install() -> None:
    """Wraps the backend's item writes and reads (after any other patch of
    them: it measures what they do)."""
    from moto.dynamodb.models import DynamoDBBackend

    get_item = DynamoDBBackend.get_item
    put_item = DynamoDBBackend.put_item
    update_item = DynamoDBBackend.update_item
    delete_item = DynamoDBBackend.delete_item
    transact_write_items = DynamoDBBackend.transact_write_items
    query = DynamoDBBackend.query

    def current(backend: Any, table: Any, key: dict[str, Any]) -> Entry:
        return Entry(table, get_item(backend, table.name, key))

    def single(write: Callable[..., Any], key_of: Callable[[Any, tuple[Any, ...]], dict[str, Any]]):
        def wrapped(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            if _quiet():
                return write(self, table_name, *args, **kwargs)
            table = self.get_table(table_name)
            key = key_of(table, args)
            before = current(self, table, key)
            pk = _value(key[table.hash_key_attr])
            _local.inside = True
            try:
                result = write(self, table_name, *args, **kwargs)
            except Exception:
                record_write(table, pk, before, None, transactional=False)
                raise
            finally:
                _local.inside = False
            record_write(table, pk, before, current(self, table, key), transactional=False)
            return result

        return wrapped

    DynamoDBBackend.put_item = single(put_item, lambda t, a: _key_of(t, a[0]))
    DynamoDBBackend.update_item = single(update_item, lambda t, a: a[0])
    DynamoDBBackend.delete_item = single(delete_item, lambda t, a: a[0])

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        if not HEAT.recording:
            return transact_write_items(self, transact_items)
        actions = []
        for action in transact_items:
            op_type, op = next(iter(action.items()))
            table = self.get_table(op["TableName"])
            key = _key_of(table, op["Item"]) if op_type == "Put" else op["Key"]
            actions.append((table, key, current(self, table, key)))
        _local.inside = True
        try:
            transact_write_items(self, transact_items)
        except Exception:
            for table, key, before in actions:
                record_write(table, _value(key[table.hash_key_attr]), before, None, True)
            raise
        finally:
            _local.inside = False
        for table, key, before in actions:
            record_write(table, _value(key[table.hash_key_attr]), before,
                         current(self, table, key), True)

    DynamoDBBackend.transact_write_items = transact

    # Reads by key are taken from the requests: the backend's get_item also
    # serves the write handlers' own lookups, which DynamoDB does not bill.
    from moto.dynamodb.responses import DynamoHandler

    handle_get = DynamoHandler.get_item
    handle_batch_get = DynamoHandler.batch_get_item

    def read_keys(handler: Any, table_name: str, keys: list[dict[str, Any]],
                  consistent: bool) -> None:
        backend = handler.dynamodb_backend
        table = backend.get_table(table_name)
        share = 1.0 if consistent else 0.5
        for key in keys:
            found = get_item(backend, table_name, key)
            HEAT.add(table_name, "", _value(key[table.hash_key_attr]),
                     rcu=share * read_units(found.size() if found is not None else 0))

    def handler_get(self: Any) -> Any:
        result = handle_get(self)
        if HEAT.recording:
            body = self.body if isinstance(self.body, dict) else json.loads(self.body)
            read_keys(self, body["TableName"], [body["Key"]],
                      bool(body.get("ConsistentRead")))
        return result

    def handler_batch_get(self: Any) -> Any:
        result = handle_batch_get(self)
        if HEAT.recording:
            # Every key asked is read and billed (unprocessed ones are not
            # returned by the local table).
            body = self.body if isinstance(self.body, dict) else json.loads(self.body)
            for table_name, request in body["RequestItems"].items():
                read_keys(self, table_name, request["Keys"],
                          bool(request.get("ConsistentRead")))
        return result

    DynamoHandler.get_item = handler_get
    DynamoHandler.batch_get_item = handler_batch_get

    def query_(self: Any, table_name: str, hash_key_dict: Any, *args: Any, **kwargs: Any) -> Any:
        result = query(self, table_name, hash_key_dict, *args, **kwargs)
        if not _quiet() and hash_key_dict:
            items = result[0]
            size = sum(i.size() for i in items)
            index = kwargs.get("index_name") or ""
            HEAT.add(table_name, index, _value(next(iter(hash_key_dict.values()))),
                     rcu=read_units(size))
        return result

    DynamoDBBackend.query = query_
