"""Schema-driven tests: schemathesis against the live `/openapi.json` of `s3-auth-api dev`.

Every operation of the published schema is exercised with generated requests (schema examples,
the deterministic coverage phase and Hypothesis fuzzing, valid and invalid data alike). Each
response must:

- not be a 5xx (`not_a_server_error`; a 5xx the operation documents, e.g. 503 or 504, still fails
  here: the dev server has credentials, a synced metagraph and no Redis to lose);
- have a status code the operation documents (`status_code_conformance`);
- have the documented content type (`content_type_conformance`);
- have a body that conforms to the documented schema (`response_schema_conformance`);
- have the documented headers (`response_headers_conformance`).

Random hotkeys and signatures only ever reach the 4xx answers, so every generated body of an
access endpoint is sent a second time with a real signature by a dev account (fields that the
signature covers replaced, every other field as generated): that is what exercises the 200
answers, and their schemas, with generated optional fields.

The server is `s3-auth-api dev`, started from the binary in S3_AUTH_API_BIN, with quotas high
enough not to interfere. Its per-address throttle of failed authentications (20 at once, then
429) cannot be raised in dev mode, and almost every generated request fails authentication, so
each case is sent from its own loopback address (127.1.0.1, 127.1.0.2, ...: Linux routes all of
127.0.0.0/8 to `lo`); otherwise all but the first 20 would be answered 429 before validation.

Generation is deterministic (fixed seed, derandomized, no example database), so the run is the
same on every machine.
"""

import math
import socket
import time
from collections import Counter
from itertools import count

import pytest
import requests
import schemathesis
from conftest import start_dev
from requests.adapters import HTTPAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from substrateinterface import Keypair

# Generated cases the run must reach (signed replays are not counted).
MIN_CASES = 1000
# Fuzzing examples are spread over the operations that take input: operations without
# parameters or body have a single possible request, so Hypothesis stops after one.
FUZZ_TARGET = 1200
SEED = 20251122

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Generated cases per operation ("POST /get-folder-access"), signed replays, and the statuses
# seen per operation (generated and replayed alike).
executed = Counter()
signed_replays = Counter()
statuses = {}


@pytest.fixture(scope="module")
def api():
    high = str(10**9)
    yield from start_dev("--miner-limit", high, "--validator-limit", high, "--total-limit", high)


class SourceAddressAdapter(HTTPAdapter):
    """Connects from a given local address."""

    def __init__(self, source, **kwargs):
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def source_address(n):
    """The n-th loopback client address: 127.1.0.1, 127.1.0.2, ..."""
    n += 1 + (1 << 16)
    return f"127.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}"


# Client addresses handed out so far; every call of the test, shrinking included, takes a new one.
addresses = count()


def client_session():
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(source_address(next(addresses))))
    return session


@pytest.fixture(scope="module")
def loopback_sources():
    """Fails unless this host can connect from 127.1.x.y (Linux can; macOS only with aliases)."""
    try:
        with socket.socket() as s:
            s.bind((source_address(0), 0))
    except OSError as e:
        pytest.fail(f"cannot bind the loopback address {source_address(0)} ({e}); this test sends each "
                    "case from its own 127.0.0.0/8 address to stay under the dev server's throttle "
                    "of failed authentications")


def takes_input(operation):
    return bool(operation.get("parameters")) or "requestBody" in operation


@pytest.fixture(scope="module")
def openapi_schema(api, loopback_sources):
    document = requests.get(f"{api}/openapi.json", timeout=10).json()
    operations = [op for item in document["paths"].values() for op in item.values() if isinstance(op, dict)]
    with_input = sum(1 for op in operations if takes_input(op)) or 1
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large", "large_base_example"],
        "base-url": api,
        "request-timeout": 10,
        "generation": {
            "mode": "all",
            "max-examples": math.ceil(FUZZ_TARGET / with_input),
            "deterministic": True,
            "database": "none",
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
    })
    return schemathesis.openapi.from_url(f"{api}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("openapi_schema")

# Dev accounts (see `s3-auth-api dev`): //Alice validates, //Charlie mines.
VALIDATOR = Keypair.create_from_uri("//Alice")
MINER = Keypair.create_from_uri("//Charlie")
MINER_COLDKEY = Keypair.create_from_uri("//Charlie//stash").ss58_address


def signed_body(path, body, n):
    """The generated body with the fields a signature covers made valid, or None."""
    if not isinstance(body, dict):
        return None
    body = dict(body)
    ts = int(time.time())
    body["timestamp"] = ts
    # Half the replays keep the generated miner hotkey / file keys, half name a real miner.
    real_miner = n % 2 == 0
    if path == "/get-folder-access":
        body.update(hotkey=MINER.ss58_address, coldkey=MINER_COLDKEY)
        message = f"s3:data:access:{MINER_COLDKEY}:{MINER.ss58_address}:{ts}"
        key = MINER
    elif path == "/get-validator-access":
        body["hotkey"] = VALIDATOR.ss58_address
        message = f"s3:validator:access:{ts}"
        key = VALIDATOR
    elif path == "/get-folder-presigned-urls":
        body["hotkey"] = VALIDATOR.ss58_address
        if real_miner:
            body["miner_hotkeys"] = [MINER.ss58_address]
        message = f"s3:validator:folders:{VALIDATOR.ss58_address}:{ts}"
        key = VALIDATOR
    elif path in ("/get-miner-specific-access", "/get-file-presigned-urls"):
        body["hotkey"] = VALIDATOR.ss58_address
        if real_miner or not isinstance(body.get("miner_hotkey"), str):
            body["miner_hotkey"] = MINER.ss58_address
        miner = body["miner_hotkey"]
        if path == "/get-miner-specific-access":
            message = f"s3:validator:miner:{miner}:{ts}"
        else:
            keys = body.get("file_keys")
            if real_miner and isinstance(keys, list):
                body["file_keys"] = [f"data/hotkey={miner}/job_id=job_1/{k}" for k in keys if isinstance(k, str)]
            message = f"s3:validator:files:{miner}:{VALIDATOR.ss58_address}:{ts}"
        key = VALIDATOR
    else:
        return None
    body["signature"] = key.sign(message).hex()
    return body


@schema.parametrize()
def test_openapi_conformance(case):
    # The operation's label, also for the coverage phase's probes with other methods.
    label = case.operation.label
    seen = statuses.setdefault(label, Counter())
    with client_session() as session:
        response = case.call_and_validate(session=session, checks=CHECKS)
        executed[label] += 1
        seen[response.status_code] += 1
        if case.method.upper() != case.operation.method.upper():
            return
        replay = signed_body(case.path, case.body, executed[label])
        if replay is None:
            return
        generated = case.body
        case.body = replay
        try:
            response = case.call_and_validate(session=session, checks=CHECKS)
        finally:
            case.body = generated
        signed_replays[label] += 1
        seen[response.status_code] += 1


def test_enough_cases_ran(openapi_schema):
    per_operation = {label: executed[label] for label in sorted(executed)}
    total = sum(executed.values())
    print(f"\nschemathesis {schemathesis.__version__}: {total} generated cases, "
          f"{sum(signed_replays.values())} signed replays")
    for label in sorted(executed):
        print(f"  {label}: {executed[label]} cases, {signed_replays[label]} signed replays, "
              f"statuses {dict(sorted(statuses[label].items()))}")
    labels = {f"{op.method.upper()} {op.path}" for op in (r.ok() for r in openapi_schema.get_all_operations())}
    assert labels <= set(executed), f"operations never exercised: {sorted(labels - set(executed))}"
    assert total >= MIN_CASES, f"only {total} generated cases ran (need {MIN_CASES}): {per_operation}"
