"""The service from Python, exactly as bittensor miners and validators call it.

Keys come from substrate-interface's Keypair (what bittensor wallets wrap); HTTP from
requests. The server is `s3-auth-api dev`, started from the binary in S3_AUTH_API_BIN.
"""

import os
import time

import boto3
import pytest
import requests
from botocore.config import Config
from substrateinterface import Keypair

from conftest import listed_keys, listed_prefixes, start_dev


@pytest.fixture(scope="module")
def api():
    yield from start_dev()


def sign(keypair, message):
    return keypair.sign(message).hex()


def miner_grant(api):
    """The folder access of the dev miner //Charlie, as a bittensor miner asks for it."""
    miner = Keypair.create_from_uri("//Charlie")
    coldkey = Keypair.create_from_uri("//Charlie//stash")
    ts = int(time.time())
    message = f"s3:data:access:{coldkey.ss58_address}:{miner.ss58_address}:{ts}"
    r = requests.post(f"{api}/get-folder-access", json={
        "coldkey": coldkey.ss58_address, "hotkey": miner.ss58_address,
        "timestamp": ts, "signature": sign(miner, message)})
    assert r.status_code == 200, r.text
    return miner, r.json()


def test_miner_uploads_and_validator_reads(api):
    miner, grant = miner_grant(api)
    assert grant["folder"] == f"data/hotkey={miner.ss58_address}/"

    payload = os.urandom(4096)
    key = grant["folder"] + "job_id=job_py/data.parquet"
    up = requests.post(grant["url"], data={**grant["fields"], "key": key},
                       files={"file": ("data.parquet", payload)})
    assert up.status_code == 204, up.text
    assert key in listed_keys(requests.get(grant["list_url"]).text)

    validator = Keypair.create_from_uri("//Alice")
    ts = int(time.time())
    r = requests.post(f"{api}/get-validator-access", json={
        "hotkey": validator.ss58_address, "timestamp": ts,
        "signature": sign(validator, f"s3:validator:access:{ts}")})
    assert r.status_code == 200, r.text
    urls = r.json()["urls"]
    assert key in listed_keys(requests.get(urls["global"]["list_all_data"]).text)
    assert f"data/hotkey={miner.ss58_address}/" in listed_prefixes(requests.get(urls["miners"]["list_all_miners"]).text)

    ts = int(time.time())
    r = requests.post(f"{api}/get-miner-specific-access", json={
        "hotkey": validator.ss58_address, "timestamp": ts, "miner_hotkey": miner.ss58_address,
        "signature": sign(validator, f"s3:validator:miner:{miner.ss58_address}:{ts}")})
    assert r.status_code == 200, r.text
    assert key in listed_keys(requests.get(r.json()["miner_url"]).text)

    ts = int(time.time())
    r = requests.post(f"{api}/get-file-presigned-urls", json={
        "hotkey": validator.ss58_address, "timestamp": ts, "miner_hotkey": miner.ss58_address,
        "file_keys": [key],
        "signature": sign(validator, f"s3:validator:files:{miner.ss58_address}:{validator.ss58_address}:{ts}")})
    assert r.status_code == 200, r.text
    download = requests.get(r.json()["file_urls"][key]["presigned_url"])
    assert download.status_code == 200
    assert download.content == payload


def test_polkadot_js_style_wrapped_signature(api):
    miner = Keypair.create_from_uri("//Dave")
    coldkey = Keypair.create_from_uri("//Dave//stash")
    ts = int(time.time())
    message = f"s3:data:access:{coldkey.ss58_address}:{miner.ss58_address}:{ts}"
    r = requests.post(f"{api}/get-folder-access", json={
        "coldkey": coldkey.ss58_address, "hotkey": miner.ss58_address, "timestamp": ts,
        "signature": "0x" + sign(miner, f"<Bytes>{message}</Bytes>")})
    assert r.status_code == 200, r.text


def test_errors_are_fastapi_shaped(api):
    r = requests.post(f"{api}/get-folder-access", json={"hotkey": "x"})
    assert r.status_code == 422
    assert {d["loc"][1] for d in r.json()["detail"]} == {"coldkey", "signature"}
    validator = Keypair.create_from_uri("//Charlie")
    ts = int(time.time())
    r = requests.post(f"{api}/get-validator-access", json={
        "hotkey": validator.ss58_address, "timestamp": ts,
        "signature": sign(validator, f"s3:validator:access:{ts}")})
    assert r.status_code == 401
    assert r.json() == {"detail": "You are not validator"}


def test_boto3_lists_keys_with_spaces_and_plus_signs_as_uploaded(api):
    """botocore asks every ListObjectsV2 for encoding-type=url and decodes the names it
    gets back, as against AWS: a key with a space, a plus sign and non-ASCII comes back as
    it was uploaded (a server that echoed the encoding without encoding would turn the
    plus into a space)."""
    _, grant = miner_grant(api)
    key = grant["folder"] + "job_id=a b+c/é 1.parquet"
    up = requests.post(grant["url"], data={**grant["fields"], "key": key},
                       files={"file": ("f.parquet", os.urandom(2048))})
    assert up.status_code == 204, up.text

    endpoint, bucket = grant["url"].rsplit("/", 1)
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="dev-access-key", aws_secret_access_key="dev-secret-key-not-for-production",
        config=Config(s3={"addressing_style": "path"}))
    job = grant["folder"] + "job_id=a b+c/"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=job)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    folders = s3.list_objects_v2(Bucket=bucket, Prefix=grant["folder"], Delimiter="/")
    assert job in [p["Prefix"] for p in folders["CommonPrefixes"]]
