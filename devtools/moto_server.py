#!/usr/bin/env python3
"""moto_server for the local stack, with DynamoDB requests serialised.

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


class SerialiseDynamoDB:
    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(("DynamoDB_", "DynamoDBStreams_")):
            return self.app(environ, start_response)
        with self.lock:
            # Materialise the body inside the lock: the backend runs lazily.
            return list(self.app(environ, start_response))


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
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerialiseDynamoDB(app), threaded=True)


if __name__ == "__main__":
    main()
