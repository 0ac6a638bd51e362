"""TransactWriteItems' ClientRequestToken in the local DynamoDB, as AWS
honours it (devtools/moto_server.py, TransactionTokens)."""

from __future__ import annotations

import io
import json
import sys
import unittest
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from moto_server import TransactionTokens  # noqa: E402


class Backend:
    """A transaction that succeeds once and then fails its own condition, as
    moto's does when the same call is run twice."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.runs += 1
        if self.runs == 1:
            start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
            return [b"{}"]
        start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")])
        return [b'{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException"}']


def call(app: TransactionTokens, body: dict[str, Any], target: str = TransactionTokens.TARGET) -> tuple[str, bytes]:
    raw = json.dumps(body).encode()
    environ = {"HTTP_X_AMZ_TARGET": target, "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = status

    out = b"".join(app(environ, start_response))
    return seen["status"], out


class TransactionTokensTest(unittest.TestCase):
    def setUp(self) -> None:
        self.now = 1000.0
        self.backend = Backend()
        self.app = TransactionTokens(self.backend, clock=lambda: self.now)
        self.request = {"TransactItems": [{"Put": {"TableName": "t", "Item": {"pk": {"S": "a"}}}}], "ClientRequestToken": "tok-1"}

    def test_a_retried_successful_call_succeeds_without_running_again(self) -> None:
        self.assertEqual(call(self.app, self.request)[0], "200 OK")
        self.assertEqual(call(self.app, self.request), ("200 OK", b"{}"))
        self.assertEqual(self.backend.runs, 1)

    def test_the_same_token_with_other_parameters_is_refused(self) -> None:
        call(self.app, self.request)
        other = dict(self.request, TransactItems=[])
        status, body = call(self.app, other)
        self.assertEqual(status, "400 Bad Request")
        self.assertIn(b"IdempotentParameterMismatchException", body)
        self.assertEqual(self.backend.runs, 1)

    def test_tokens_last_ten_minutes(self) -> None:
        call(self.app, self.request)
        self.now += 601
        status, _ = call(self.app, self.request)
        self.assertEqual(status, "400 Bad Request", "run again, and it fails its condition")
        self.assertEqual(self.backend.runs, 2)

    def test_failed_calls_and_calls_without_a_token_run_every_time(self) -> None:
        no_token = {k: v for k, v in self.request.items() if k != "ClientRequestToken"}
        call(self.app, no_token)
        self.assertEqual(call(self.app, no_token)[0], "400 Bad Request")
        self.assertEqual(call(self.app, self.request)[0], "400 Bad Request")
        self.assertEqual(call(self.app, self.request)[0], "400 Bad Request", "a failure is not remembered")
        self.assertEqual(self.backend.runs, 4)

    def test_other_calls_pass_through(self) -> None:
        call(self.app, self.request, target="DynamoDB_20120810.PutItem")
        call(self.app, self.request, target="DynamoDB_20120810.PutItem")
        self.assertEqual(self.backend.runs, 2)


if __name__ == "__main__":
    unittest.main()
