#!/usr/bin/env python3
"""A handler worker for event-hub action requests, in Python.

It consumes the action topic of one (flavor, subtype) and verifies each
request: the CloudEvents headers, and the EdDSA token with the hub's keys
from a JWKS file or PEM files. It drops duplicates, runs `handle`, and
reports `running`, then `succeeded` or `failed`, to the status topic. It
commits a request's offset only after the broker acknowledged its final
status, so a crash before that redelivers the request.

    pip install -r requirements.txt
    event-hub keys export --out jwks.json
    python3 worker.py --bootstrap-servers 127.0.0.1:9092 \\
        --flavor builtin --subtype pipeline_run --jwks jwks.json

Requests are handled one at a time, in partition order. Duplicates are
dropped only within one process (an LRU of completed execution ids), so a
handler must tolerate running twice for the same execution.
"""

import argparse
import base64
import hashlib
import json
import logging
import os
import socket
import sys
import time
from collections import OrderedDict
from datetime import datetime, timezone

import jwt
from confluent_kafka import Consumer, KafkaError, Producer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LOG = logging.getLogger("python_worker")

REJECTED_PREFIX = "rejected: "
COMPLETED_CACHE_SIZE = 10000


class Rejected(Exception):
    """The request failed verification; its handler must not run."""


class HandlerError(Exception):
    """A handler failure; `retryable` requests another delivery from the hub."""

    def __init__(self, message, retryable=True):
        super().__init__(message)
        self.retryable = retryable


def handle(request):
    """Perform the action of one verified request.

    This example starts a pretend pipeline run from the action's
    `template_id` and the pushed commit. Raise HandlerError(...,
    retryable=False) for errors that no retry can fix.
    """
    template = request["action"]["configuration"].get("template_id")
    if not template:
        raise HandlerError("the action configuration has no template_id", retryable=False)
    commit = (request["event"].get("data") or {}).get("after", "unknown")
    LOG.info(
        "pipeline run started: execution %s attempt %s template %s commit %s",
        request["execution_id"],
        request.get("attempt", 1),
        template,
        commit,
    )


def thumbprint(raw_public_key):
    """Return the RFC 7638 JWK thumbprint of an Ed25519 key, the hub's kid."""
    x = base64.urlsafe_b64encode(raw_public_key).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def load_keys(jwks_path, pem_paths):
    """Return the hub's public keys by kid, from a JWKS file and PEM files."""
    keys = {}
    if jwks_path:
        with open(jwks_path, encoding="utf-8") as file:
            key_set = json.load(file)
        for entry in key_set.get("keys", []):
            if entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
                continue
            key = jwt.PyJWK.from_dict(entry, algorithm="EdDSA").key
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            keys[entry.get("kid") or thumbprint(raw)] = key
    for path in pem_paths:
        with open(path, "rb") as file:
            key = serialization.load_pem_public_key(file.read())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        keys[thumbprint(raw)] = key
    if not keys:
        raise ValueError("no public key: pass --jwks FILE or --public-key FILE")
    return keys


def headers_of(message):
    """Return the record's headers as a dict of text values."""
    headers = {}
    for name, value in message.headers() or []:
        if value is not None:
            headers[name] = value.decode("utf-8", errors="replace")
    return headers


def verify(message, action_type, keys, issuer):
    """Return the verified request of `message`, or raise Rejected."""
    headers = headers_of(message)
    try:
        request = json.loads(message.value())
        execution_id = request["execution_id"]
        token = request["auth"]["token"]
        requested_type = f'{request["action"]["flavor"]}.{request["action"]["subtype"]}'
    except (TypeError, ValueError, KeyError) as error:
        raise Rejected(f"the value is not an action request: {error!r}") from error

    if headers.get("ce_specversion") != "1.0":
        raise Rejected(f"header ce_specversion is {headers.get('ce_specversion')!r}, expected '1.0'")
    if headers.get("ce_id") != execution_id:
        raise Rejected(f"header ce_id {headers.get('ce_id')!r} differs from execution_id {execution_id}")
    if headers.get("ce_type") != action_type or requested_type != action_type:
        raise Rejected(f"the request is for {headers.get('ce_type')!r}, expected {action_type!r}")

    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as error:
        raise Rejected(f"the token is invalid: {error}") from error
    if kid not in keys:
        raise Rejected(f"the token cannot be verified: no public key with kid {kid}")
    try:
        claims = jwt.decode(
            token,
            keys[kid],
            algorithms=["EdDSA"],
            audience=action_type,
            issuer=issuer,
            options={"require": ["exp", "sub", "aud", "jti"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise Rejected("the token has expired") from error
    except jwt.InvalidAudienceError as error:
        raise Rejected(f"the token's audience is not {action_type!r}") from error
    except jwt.InvalidSignatureError as error:
        raise Rejected("the token's signature is invalid") from error
    except jwt.InvalidTokenError as error:
        raise Rejected(f"the token is invalid: {error}") from error
    if claims["jti"] != execution_id:
        raise Rejected(f"the token was issued for execution {claims['jti']}, not {execution_id}")
    return request


class Worker:
    """Consumes one action topic, handles requests and reports statuses."""

    def __init__(self, args):
        self.action_type = f"{args.flavor}.{args.subtype}"
        self.topic = f"{args.actions_topic_prefix}{self.action_type}"
        self.status_topic = args.status_topic
        self.issuer = args.issuer
        self.keys = load_keys(args.jwks, args.public_key)
        self.name = f"{socket.gethostname()}/{os.getpid()}"
        self.completed = OrderedDict()
        self.consumer = Consumer(
            {
                "bootstrap.servers": args.bootstrap_servers,
                "group.id": args.group_id or f"event-hub-worker-{self.action_type}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "topic.metadata.refresh.interval.ms": 5000,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": args.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
            }
        )

    def report(self, message, execution_id, status, attempt, error=None, retryable=False):
        """Send a status report and wait until the broker acknowledged it."""
        value = {
            "execution_id": execution_id,
            "status": status,
            "attempt": attempt,
            "error": error,
            "retryable": retryable,
            "worker": self.name,
            "reported_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "request": {
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
            },
        }
        outcome = {}

        def delivered(delivery_error, _record):
            outcome["error"] = delivery_error

        self.producer.produce(
            self.status_topic,
            key=execution_id,
            value=json.dumps(value),
            headers={"content-type": "application/json"},
            on_delivery=delivered,
        )
        while "error" not in outcome:
            self.producer.flush(1.0)
        if outcome["error"] is not None:
            raise RuntimeError(f"status report not delivered: {outcome['error']}")

    def report_until_delivered(self, *args, **kwargs):
        """Retry a final status report until it is delivered."""
        delay = 0.1
        while True:
            try:
                self.report(*args, **kwargs)
                return
            except RuntimeError as error:
                LOG.warning("%s; retrying in %.1f s", error, delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def process(self, message):
        """Verify, deduplicate, handle and report one record."""
        try:
            request = verify(message, self.action_type, self.keys, self.issuer)
        except Rejected as rejection:
            headers = headers_of(message)
            execution_id = headers.get("ce_id")
            attempt = headers.get("event-hub-attempt", "1")
            attempt = int(attempt) if attempt.isdigit() and int(attempt) > 0 else 1
            LOG.warning("request rejected (execution %s): %s", execution_id, rejection)
            if execution_id:
                self.report_until_delivered(
                    message,
                    execution_id,
                    "failed",
                    attempt,
                    error=REJECTED_PREFIX + str(rejection),
                )
            return

        execution_id = request["execution_id"]
        attempt = request.get("attempt", 1)
        known = self.completed.get(execution_id)
        if known is not None and (known["final"] or attempt <= known["attempt"]):
            self.completed.move_to_end(execution_id)
            LOG.info("duplicate request dropped: execution %s attempt %s", execution_id, attempt)
            return

        try:
            self.report(message, execution_id, "running", attempt)
        except RuntimeError as error:
            LOG.warning("%s; handling the request anyway", error)
        try:
            handle(request)
            status, error, retryable = "succeeded", None, False
        except HandlerError as failure:
            status, error, retryable = "failed", str(failure), failure.retryable
        except Exception as failure:  # noqa: BLE001 - any handler bug is a retryable failure
            status, error, retryable = "failed", f"the handler raised {failure!r}", True
        self.report_until_delivered(
            message, execution_id, status, attempt, error=error, retryable=retryable
        )
        LOG.info("execution %s attempt %s %s", execution_id, attempt, status)

        self.completed[execution_id] = {"attempt": attempt, "final": not retryable}
        self.completed.move_to_end(execution_id)
        while len(self.completed) > COMPLETED_CACHE_SIZE:
            self.completed.popitem(last=False)

    def run(self, max_requests, timeout):
        """Handle requests until `max_requests` are done or `timeout` passes.

        Returns the number of requests handled.
        """
        self.consumer.subscribe([self.topic])
        LOG.info("worker started on %s with keys %s", self.topic, sorted(self.keys))
        handled = 0
        started = time.monotonic()
        try:
            while max_requests is None or handled < max_requests:
                if timeout is not None and time.monotonic() - started > timeout:
                    break
                message = self.consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        LOG.warning("consumer error: %s", message.error())
                    continue
                self.process(message)
                # Commit only after the final status is acknowledged.
                self.consumer.commit(message=message, asynchronous=False)
                handled += 1
        finally:
            self.consumer.close()
            self.producer.flush(10)
        return handled


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers", required=True, help="Kafka host:port list")
    parser.add_argument("--flavor", required=True, help="action flavor to handle")
    parser.add_argument("--subtype", required=True, help="action subtype to handle")
    parser.add_argument("--jwks", help="JWKS file of the hub's public keys (event-hub keys export)")
    parser.add_argument(
        "--public-key", action="append", default=[], help="public key PEM file; repeatable"
    )
    parser.add_argument("--group-id", help="consumer group; default event-hub-worker-FLAVOR.SUBTYPE")
    parser.add_argument("--actions-topic-prefix", default="event-hub.actions.")
    parser.add_argument("--status-topic", default="event-hub.execution-status")
    parser.add_argument("--issuer", default="event-hub", help="expected iss of the tokens")
    parser.add_argument("--once", action="store_true", help="exit after one request")
    parser.add_argument("--max-requests", type=int, help="exit after this many requests")
    parser.add_argument("--timeout", type=float, help="exit after this many seconds")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    max_requests = 1 if args.once else args.max_requests
    try:
        worker = Worker(args)
    except (OSError, ValueError) as error:
        LOG.error("cannot start: %s", error)
        return 2
    handled = worker.run(max_requests, args.timeout)
    if max_requests is not None and handled < max_requests:
        LOG.error("handled %d of %d requests before the timeout", handled, max_requests)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
