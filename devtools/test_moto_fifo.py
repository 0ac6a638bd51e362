"""SQS FIFO in the local SQS (devtools/moto_server.py,
`_fifo_order_after_a_timeout`): a group whose messages come back after a
visibility timeout is handed out from its first message, as SQS does."""

from __future__ import annotations

import sys
import time
import unittest
from pathlib import Path
from typing import Any

import os

import boto3
from moto import mock_aws

# In-process moto only: `make test` runs these with the local stack's
# environment, whose AWS_ENDPOINT_URL would send the calls to its server.
os.environ.pop("AWS_ENDPOINT_URL", None)
sys.path.insert(0, str(Path(__file__).resolve().parent))
import moto_server  # noqa: E402

if not getattr(moto_server, "_fifo_patched_for_tests", False):
    moto_server._fifo_order_after_a_timeout()
    moto_server._fifo_patched_for_tests = True  # type: ignore[attr-defined]

KW: dict[str, Any] = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}


@mock_aws
class FifoTest(unittest.TestCase):
    def test_a_group_that_timed_out_comes_back_in_order(self) -> None:
        sqs = boto3.client("sqs", **KW)
        url = sqs.create_queue(QueueName="q.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        for i in range(4):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}", MessageGroupId="g", MessageDeduplicationId=f"d{i}")
        first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=1)["Messages"]
        self.assertEqual([m["Body"] for m in first], ["m0", "m1", "m2", "m3"])
        # In flight: the group is held.
        self.assertNotIn("Messages", sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))
        time.sleep(1.2)
        again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=30)["Messages"]
        self.assertEqual([m["Body"] for m in again], ["m0"])
        # m0 is in flight again: nothing else of the group comes out, and a
        # long poll waits (without spinning) until it gives up.
        self.assertNotIn("Messages", sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10))
        started = time.monotonic()
        cpu = time.process_time()
        self.assertNotIn("Messages", sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1))
        self.assertGreaterEqual(time.monotonic() - started, 0.9)
        self.assertLess(time.process_time() - cpu, 0.5, "the long poll spun")


if __name__ == "__main__":
    unittest.main()
