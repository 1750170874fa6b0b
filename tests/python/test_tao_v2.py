"""Tao v2 header-signed requests, as current Subnet 13 clients send them, against `dev`.

The signer below is the project's own, written from the protocol: headers X-Tao-Version 2,
X-Tao-Timestamp (ms), X-Tao-Nonce (uuid4), X-Tao-Signed-By and X-Tao-Signature (base64
sr25519) over f"{sha256(body).hexdigest()}.{nonce}.{timestamp}" of the exact body bytes.
Keys come from bittensor-wallet's Keypair (bittensor >= 10).
"""

import base64
import hashlib
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from bittensor_wallet import Keypair

from conftest import listed_keys, next_token, start_dev

MINER = Keypair.create_from_uri("//Charlie")
MINER_COLD = Keypair.create_from_uri("//Charlie//stash")
VALIDATOR = Keypair.create_from_uri("//Alice")
STRANGER = Keypair.create_from_uri("//Ferdie")


def tao_headers(keypair, body, *, ts_ms=None, nonce=None, version="2"):
    nonce = nonce or str(uuid.uuid4())
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    message = f"{hashlib.sha256(body).hexdigest()}.{nonce}.{ts}"
    return {
        "Content-Type": "application/json",
        "X-Tao-Version": version,
        "X-Tao-Timestamp": ts,
        "X-Tao-Nonce": nonce,
        "X-Tao-Signed-By": keypair.ss58_address,
        "X-Tao-Signature": base64.b64encode(keypair.sign(message.encode())).decode(),
    }


def call(api, path, keypair, payload, compact=False, **kw):
    # Miners send compact JSON, validators json.dumps with spaces: the hash is over the
    # bytes as sent either way.
    body = (json.dumps(payload, separators=(",", ":")) if compact else json.dumps(payload)).encode()
    return requests.post(f"{api}{path}", data=body, headers=tao_headers(keypair, body, **kw))


@pytest.fixture(scope="module")
def api():
    yield from start_dev()


@pytest.fixture(scope="module")
def put_api():
    yield from start_dev("--put-uploads")


def test_upload_by_post_then_409(api):
    payload = {"job_id": "job_tao", "filename": "part-0.parquet"}
    r = call(api, "/get-file-upload-url", MINER, payload, compact=True)
    assert r.status_code == 200, r.text
    grant = r.json()
    assert grant["method"] == "POST"
    assert grant["s3_key"] == f"data/hotkey={MINER.ss58_address}/job_id=job_tao/part-0.parquet"
    up = requests.post(grant["url"], data=grant["fields"], files={"file": ("part-0.parquet", os.urandom(2048))})
    assert up.status_code == 204, up.text
    again = call(api, "/get-file-upload-url", MINER, payload, compact=True)
    assert again.status_code == 409
    assert again.json() == {"detail": "File already exists"}


def test_upload_by_put(put_api):
    r = call(put_api, "/get-file-upload-url", MINER, {"job_id": "job_put", "filename": "a.parquet"}, compact=True)
    assert r.status_code == 200, r.text
    grant = r.json()
    assert grant["method"] == "PUT" and grant["fields"] == {}
    up = requests.put(grant["url"], data=os.urandom(3000), headers={"Content-Type": "application/octet-stream"})
    assert up.status_code == 200, up.text
    again = call(put_api, "/get-file-upload-url", MINER, {"job_id": "job_put", "filename": "a.parquet"}, compact=True)
    assert again.status_code == 409


def test_miner_list_pages_and_file_urls_download(api):
    # 1,005 objects in one folder, through the miner's own (body-signed) folder policy.
    ts = int(time.time())
    message = f"s3:data:access:{MINER_COLD.ss58_address}:{MINER.ss58_address}:{ts}"
    grant = requests.post(f"{api}/get-folder-access", json={
        "coldkey": MINER_COLD.ss58_address, "hotkey": MINER.ss58_address,
        "timestamp": ts, "signature": MINER.sign(message.encode()).hex()}).json()
    folder = grant["folder"] + "job_id=big/"
    session = requests.Session()

    def put(i):
        r = session.post(grant["url"], data={**grant["fields"], "key": f"{folder}f{i:04d}.bin"},
                         files={"file": ("f.bin", bytes(range(256)) * 4)})
        assert r.status_code == 204, r.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1005)))

    keys, token, pages = [], None, 0
    while True:
        r = call(api, "/get-miner-list", VALIDATOR, {"miner_hotkey": MINER.ss58_address, "continuation_token": token})
        assert r.status_code == 200, r.text
        xml = requests.get(r.json()["list_url"]).text
        pages += 1
        keys += listed_keys(xml)
        token = next_token(xml)
        if token is None:
            break
        assert pages < 200
    big = [k for k in keys if k.startswith(folder)]
    assert len(big) == 1005 and pages >= 2

    wanted = big[:2]
    r = call(api, "/get-file-presigned-urls", VALIDATOR,
             {"miner_hotkey": MINER.ss58_address, "file_keys": wanted, "expiry_hours": 3})
    assert r.status_code == 200, r.text
    url = r.json()["file_urls"][wanted[0]]["presigned_url"]
    whole = requests.get(url)
    assert whole.status_code == 200 and whole.content == bytes(range(256)) * 4
    part = requests.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == bytes(range(10, 20))


def test_each_refusal(api):
    payload = {"job_id": "j", "filename": "refused.bin"}
    body = json.dumps(payload).encode()
    path = f"{api}/get-file-upload-url"

    r = requests.post(path, data=body, headers=tao_headers(MINER, b"another body"))
    assert (r.status_code, r.json()["detail"]) == (401, "Invalid signature")
    for offset in (-20_000, 20_000):
        r = requests.post(path, data=body, headers=tao_headers(MINER, body, ts_ms=int(time.time() * 1000) + offset))
        assert r.status_code == 401, offset
        assert "skew" in r.json()["detail"]
    headers = tao_headers(MINER, body)
    assert requests.post(path, data=body, headers=headers).status_code == 200
    r = requests.post(path, data=body, headers=headers)
    assert (r.status_code, r.json()["detail"]) == (401, "Nonce already used")
    r = requests.post(path, data=body, headers=tao_headers(MINER, body, version="1"))
    assert r.status_code == 400
    r = requests.post(path, data=body, headers=tao_headers(STRANGER, body))
    assert (r.status_code, r.json()["detail"]) == (401, "Invalid signature")
    r = call(api, "/get-miner-list", MINER, {"miner_hotkey": MINER.ss58_address})
    assert (r.status_code, r.json()["detail"]) == (401, "You are not validator")
