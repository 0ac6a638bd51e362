"""DynamoDB Streams in the local DynamoDB as DynamoDB writes them
(devtools/moto_server.py, `_faithful_streams` and `ttl_sweep`): what moto
5.2.1 got wrong, checked against the patched backend in-process."""

from __future__ import annotations

import sys
import time
import unittest
from pathlib import Path
from typing import Any

import os

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

# In-process moto only: `make test` runs these with the local stack's
# environment, whose AWS_ENDPOINT_URL would send the calls to its server.
os.environ.pop("AWS_ENDPOINT_URL", None)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import moto_server  # noqa: E402
import stack  # noqa: E402


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()
if not getattr(moto_server, "_streams_patched_for_tests", False):
    moto_server._cheap_transaction_rollback()
    moto_server._faithful_streams(CLOCK)
    moto_server._streams_patched_for_tests = True  # type: ignore[attr-defined]

KW: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
K = {"pk": {"S": "a"}, "sk": {"S": "1"}}


@mock_aws
class StreamsTest(unittest.TestCase):
    def setUp(self) -> None:
        self.ddb = boto3.client("dynamodb", **KW)
        self.streams = boto3.client("dynamodbstreams", **KW)
        r = self.ddb.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        self.arn = r["TableDescription"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    def test_the_fast_get_records_answers_what_moto_answers(self) -> None:
        import json

        self.ddb.put_item(TableName="t", Item={**K, "n": {"N": "1"}, "m": {"M": {"x": {"S": "y"}}}})
        self.ddb.update_item(TableName="t", Key=K, UpdateExpression="SET n = :v",
                             ExpressionAttributeValues={":v": {"N": "2"}})
        self.ddb.delete_item(TableName="t", Key=K)
        shard = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"][0]["ShardId"]
        fresh = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        fast = moto_server.fast_get_records(json.dumps({"ShardIterator": fresh, "Limit": 10}).encode())
        assert fast is not None
        got = json.loads(fast)
        # moto's serialiser on the same records, through boto3 (datetimes parsed).
        want = self.streams.get_records(ShardIterator=fresh, Limit=10)["Records"]
        self.assertEqual([r["eventName"] for r in got["Records"]], ["INSERT", "MODIFY", "REMOVE"])
        for g, w in zip(got["Records"], want, strict=True):
            self.assertEqual(g["dynamodb"]["ApproximateCreationDateTime"],
                             int(w["dynamodb"]["ApproximateCreationDateTime"].timestamp()))
            g["dynamodb"].pop("ApproximateCreationDateTime")
            w["dynamodb"].pop("ApproximateCreationDateTime")
            self.assertEqual(json.loads(json.dumps(g)), json.loads(json.dumps(w, default=str)))
        self.assertTrue(got["NextShardIterator"])
        # An iterator moto does not know: moto's own path answers the error.
        self.assertIsNone(moto_server.fast_get_records(b'{"ShardIterator": "nope"}'))

    def records(self) -> list[dict[str, Any]]:
        r = self.streams.get_records(ShardIterator=self.iterator)
        self.iterator = r["NextShardIterator"]
        return r["Records"]

    def test_the_stream_arn_is_the_one_stack_py_renders(self) -> None:
        self.assertEqual(self.arn, f"arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/{stack.STREAM_LABEL}")
        self.assertEqual(stack.STREAM_LABEL, moto_server.STREAM_LABEL)
        with self.assertRaises(ClientError) as e:
            self.streams.describe_stream(StreamArn=self.arn.rsplit("/", 1)[0] + "/2020-01-01T00:00:00.000")
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceNotFoundException")

    def test_insert_modify_remove_with_images(self) -> None:
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "1"}})
        self.ddb.update_item(TableName="t", Key=K, UpdateExpression="SET q = q + :one",
                             ExpressionAttributeValues={":one": {"N": "1"}})
        self.ddb.delete_item(TableName="t", Key=K)
        recs = self.records()
        self.assertEqual([r["eventName"] for r in recs], ["INSERT", "MODIFY", "REMOVE"])
        modify = recs[1]["dynamodb"]
        self.assertEqual(modify["OldImage"]["q"], {"N": "1"})
        self.assertEqual(modify["NewImage"]["q"], {"N": "2"})
        self.assertEqual(modify["Keys"], K)
        self.assertNotIn("NewImage", recs[2]["dynamodb"])
        for r in recs:
            self.assertEqual(r["eventVersion"], "1.1")
            self.assertEqual(r["dynamodb"]["ApproximateCreationDateTime"].microsecond, 0)
        seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
        self.assertEqual(seqs, sorted(seqs))

    def test_writes_that_change_nothing_write_no_record(self) -> None:
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "2"}})
        self.records()
        self.ddb.update_item(TableName="t", Key=K, UpdateExpression="SET q = :v",
                             ExpressionAttributeValues={":v": {"N": "2"}})
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "2"}})
        self.ddb.delete_item(TableName="t", Key={"pk": {"S": "nope"}, "sk": {"S": "1"}})
        self.assertEqual(self.records(), [])

    def test_update_creating_an_item_is_one_insert(self) -> None:
        self.ddb.update_item(TableName="t", Key=K, UpdateExpression="SET q = :v",
                             ExpressionAttributeValues={":v": {"N": "5"}})
        self.ddb.put_item(TableName="t", Item={"pk": {"S": "b"}, "sk": {"S": "1"}})
        recs = self.records()
        self.assertEqual([r["eventName"] for r in recs], ["INSERT", "INSERT"])
        self.assertEqual(recs[0]["dynamodb"]["NewImage"]["q"], {"N": "5"})
        a, b = (int(r["dynamodb"]["SequenceNumber"]) for r in recs)
        self.assertLess(a, b)

    def test_conditional_failures_write_nothing(self) -> None:
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "1"}})
        self.records()
        with self.assertRaises(ClientError):
            self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "9"}}, ConditionExpression="attribute_not_exists(pk)")
        with self.assertRaises(ClientError):
            self.ddb.update_item(TableName="t", Key=K, UpdateExpression="SET q = :v", ConditionExpression="q = :z",
                                 ExpressionAttributeValues={":v": {"N": "7"}, ":z": {"N": "0"}})
        self.assertEqual(self.records(), [])

    def transact(self, check_exists: str) -> None:
        self.ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "d"}, "sk": {"S": "1"}}}},
            {"Update": {"TableName": "t", "Key": K, "UpdateExpression": "SET q = :v",
                        "ExpressionAttributeValues": {":v": {"N": "4"}}}},
            {"Delete": {"TableName": "t", "Key": {"pk": {"S": "gone"}, "sk": {"S": "1"}}}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": check_exists}, "sk": {"S": "1"}},
                                "ConditionExpression": "attribute_exists(pk)"}},
        ])

    def test_a_cancelled_transaction_writes_nothing(self) -> None:
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "1"}})
        self.ddb.put_item(TableName="t", Item={"pk": {"S": "gone"}, "sk": {"S": "1"}})
        self.records()
        with self.assertRaises(ClientError) as e:
            self.transact("missing")
        self.assertEqual(e.exception.response["Error"]["Code"], "TransactionCanceledException")
        self.assertEqual(self.records(), [])
        self.assertEqual(self.ddb.get_item(TableName="t", Key=K)["Item"]["q"], {"N": "1"})
        # ... and the next write's record follows on.
        self.ddb.put_item(TableName="t", Item={"pk": {"S": "z"}, "sk": {"S": "1"}})
        self.assertEqual([r["eventName"] for r in self.records()], ["INSERT"])

    def test_a_transaction_writes_one_record_per_item_changed(self) -> None:
        self.ddb.put_item(TableName="t", Item={**K, "q": {"N": "1"}})
        self.ddb.put_item(TableName="t", Item={"pk": {"S": "gone"}, "sk": {"S": "1"}})
        self.ddb.put_item(TableName="t", Item={"pk": {"S": "c"}, "sk": {"S": "1"}})
        self.records()
        self.transact("c")
        recs = self.records()
        self.assertEqual([(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in recs],
                         [("INSERT", "d"), ("MODIFY", "a"), ("REMOVE", "gone")])

    def test_iterators_expire_after_15_minutes(self) -> None:
        CLOCK.now += 15 * 60 + 1
        with self.assertRaises(ClientError) as e:
            self.records()
        self.assertEqual(e.exception.response["Error"]["Code"], "ExpiredIteratorException")
        with self.assertRaises(ClientError) as e:
            self.streams.get_records(ShardIterator=self.arn + "|1|nonsense")
        self.assertEqual(e.exception.response["Error"]["Code"], "ValidationException")

    def test_ttl_deletes_expired_items_with_a_service_remove(self) -> None:
        self.ddb.update_time_to_live(TableName="t", TimeToLiveSpecification={"AttributeName": "exp", "Enabled": True})
        now = time.time()
        items = {
            "expired": {"N": str(int(now - 100))},
            "just-expired": {"N": str(int(now - 5))},
            "future": {"N": str(int(now + 100))},
            "ancient": {"N": str(int(now - 6 * 365 * 86400))},
            "string": {"S": str(int(now - 100))},
        }
        for pk, exp in items.items():
            self.ddb.put_item(TableName="t", Item={"pk": {"S": pk}, "sk": {"S": "1"}, "exp": exp})
        self.records()
        self.assertEqual(moto_server.ttl_sweep(now, delete_after=30), 1)
        recs = self.records()
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0]["eventName"], "REMOVE")
        self.assertEqual(recs[0]["dynamodb"]["Keys"]["pk"], {"S": "expired"})
        self.assertEqual(recs[0]["userIdentity"], {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"})
        left = {i["pk"]["S"] for i in self.ddb.scan(TableName="t")["Items"]}
        self.assertEqual(left, {"just-expired", "future", "ancient", "string"})

    def test_the_sweeper_deletes_the_same_in_short_holds_of_the_lock(self) -> None:
        import threading

        self.ddb.update_time_to_live(TableName="t", TimeToLiveSpecification={"AttributeName": "exp", "Enabled": True})
        now = time.time()
        for i in range(5):
            exp = now - 100 if i % 2 == 0 else now + 100
            self.ddb.put_item(TableName="t", Item={"pk": {"S": f"p{i}"}, "sk": {"S": "1"}, "exp": {"N": str(int(exp))}})
        self.records()
        old, moto_server.TTL_SWEEP_CHUNK = moto_server.TTL_SWEEP_CHUNK, 2
        try:
            self.assertEqual(moto_server.ttl_sweep_chunked(threading.Lock(), now, delete_after=30), 3)
        finally:
            moto_server.TTL_SWEEP_CHUNK = old
        self.assertEqual([r["eventName"] for r in self.records()], ["REMOVE"] * 3)
        left = {i["pk"]["S"] for i in self.ddb.scan(TableName="t")["Items"]}
        self.assertEqual(left, {"p1", "p3"})


if __name__ == "__main__":
    unittest.main()
