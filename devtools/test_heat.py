"""The partition heat recorder (devtools/heat.py) bills each call as
DynamoDB does, per partition key of the table and of its index."""

from __future__ import annotations

import os
import sys
import unittest
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

os.environ.pop("AWS_ENDPOINT_URL", None)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import heat  # noqa: E402

if not getattr(heat, "_installed_for_tests", False):
    heat.install()
    heat._installed_for_tests = True  # type: ignore[attr-defined]

KW: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}


def item(pk: str, sk: str, padding: int, gsi: str | None = None) -> dict[str, Any]:
    attrs = {"pk": {"S": pk}, "sk": {"S": sk}, "pad": {"S": "x" * padding}}
    if gsi is not None:
        attrs["gsi1pk"] = {"S": gsi}
        attrs["gsi1sk"] = {"S": sk}
    return attrs


@mock_aws
class HeatTest(unittest.TestCase):
    def setUp(self) -> None:
        self.ddb = boto3.client("dynamodb", **KW)
        self.ddb.create_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "gsi1",
                "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"},
                              {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
            BillingMode="PAY_PER_REQUEST",
        )
        heat.HEAT.start()

    def tearDown(self) -> None:
        heat.HEAT.stop()

    def units(self) -> dict[tuple[str, str], tuple[float, float]]:
        return {(k["index"], k["pk"]): (k["wcu"], k["rcu"]) for k in heat.HEAT.report()["keys"]}

    def test_a_write_bills_its_kilobytes_on_its_partition_and_its_index(self) -> None:
        # About 1.5 KB: 2 WCU on the table's key and on the index's.
        self.ddb.put_item(TableName="t", Item=item("A", "1", 1500, gsi="T#1"))
        self.assertEqual(self.units(), {("", "A"): (2, 0), ("gsi1", "T#1"): (2, 0)})

    def test_a_transaction_bills_twice_and_a_condition_check_too(self) -> None:
        self.ddb.put_item(TableName="t", Item=item("B", "1", 10))
        heat.HEAT.start()
        self.ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "t", "Item": item("A", "1", 10, gsi="T#1")}},
            {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"S": "B"}, "sk": {"S": "1"}},
                                "ConditionExpression": "attribute_exists(pk)"}},
        ])
        # The index is written as a standard write.
        self.assertEqual(self.units(), {("", "A"): (2, 0), ("", "B"): (2, 0), ("gsi1", "T#1"): (1, 0)})

    def test_a_refused_write_still_bills_and_a_move_in_the_index_writes_both_keys(self) -> None:
        self.ddb.put_item(TableName="t", Item=item("A", "1", 10, gsi="T#1"))
        heat.HEAT.start()
        with self.assertRaises(ClientError):
            self.ddb.put_item(TableName="t", Item=item("A", "1", 10), ConditionExpression="attribute_not_exists(pk)")
        self.assertEqual(self.units(), {("", "A"): (1, 0)})
        self.ddb.update_item(TableName="t", Key={"pk": {"S": "A"}, "sk": {"S": "1"}},
                             UpdateExpression="SET gsi1pk = :g", ExpressionAttributeValues={":g": {"S": "T#2"}})
        self.assertEqual(self.units(), {("", "A"): (2, 0), ("gsi1", "T#1"): (1, 0), ("gsi1", "T#2"): (1, 0)})

    def test_a_keys_only_index_is_not_written_when_its_keys_stay(self) -> None:
        self.ddb.update_table(
            TableName="t",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("gsi3pk", "gsi3sk")],
            GlobalSecondaryIndexUpdates=[{"Create": {
                "IndexName": "gsi3",
                "KeySchema": [{"AttributeName": "gsi3pk", "KeyType": "HASH"},
                              {"AttributeName": "gsi3sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }}],
        )
        entry = item("A", "1", 10, gsi="T#1")
        entry |= {"gsi3pk": {"S": "T#1#L#3"}, "gsi3sk": {"S": "1"}, "quantity": {"N": "5"}}
        self.ddb.put_item(TableName="t", Item=entry)
        self.assertEqual(self.units(), {("", "A"): (1, 0), ("gsi1", "T#1"): (1, 0), ("gsi3", "T#1#L#3"): (1, 0)})
        heat.HEAT.start()
        key = {"pk": {"S": "A"}, "sk": {"S": "1"}}
        for n in ("4", "3"):
            self.ddb.update_item(TableName="t", Key=key, UpdateExpression="SET quantity = :q",
                                 ExpressionAttributeValues={":q": {"N": n}})
        # The all-attributes index is rewritten each time; the keys-only one never.
        self.assertEqual(self.units(), {("", "A"): (2, 0), ("gsi1", "T#1"): (2, 0)})
        # The same item put again changes nothing either index projects.
        self.ddb.put_item(TableName="t", Item=entry | {"quantity": {"N": "3"}})
        self.assertEqual(self.units(), {("", "A"): (3, 0), ("gsi1", "T#1"): (2, 0)})

    def test_reads_bill_per_four_kilobytes_and_nothing_is_kept_when_stopped(self) -> None:
        for sk in ("1", "2", "3"):
            self.ddb.put_item(TableName="t", Item=item("A", sk, 2000, gsi="T#1"))
        heat.HEAT.start()
        self.ddb.get_item(TableName="t", Key={"pk": {"S": "A"}, "sk": {"S": "1"}}, ConsistentRead=True)
        self.ddb.query(TableName="t", IndexName="gsi1", KeyConditionExpression="gsi1pk = :p",
                       ExpressionAttributeValues={":p": {"S": "T#1"}})
        # One item of 2 KB: 1 RCU; a page of three: 6 KB, 2 RCU.
        self.assertEqual(self.units(), {("", "A"): (0, 1), ("gsi1", "T#1"): (0, 2)})
        # Eventually consistent reads by key: half as much.
        self.ddb.get_item(TableName="t", Key={"pk": {"S": "A"}, "sk": {"S": "2"}})
        self.ddb.batch_get_item(RequestItems={"t": {"Keys": [
            {"pk": {"S": "A"}, "sk": {"S": "3"}}]}})
        self.assertEqual(self.units()[("", "A")], (0, 2))
        heat.HEAT.stop()
        self.ddb.put_item(TableName="t", Item=item("C", "1", 10))
        self.assertNotIn(("", "C"), self.units())


if __name__ == "__main__":
    unittest.main()
