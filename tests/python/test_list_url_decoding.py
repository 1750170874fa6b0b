"""Keys with `%`, `+`, a space and non-ASCII, read through every list URL the service
signs, as the validators of Subnet 46 and Subnet 13 read them (ElementTree, then
urllib.parse.unquote on each Key and Prefix: see conftest.listed_keys), against `dev`.

The list URLs ask for `encoding-type=url`, as botocore signs them, so S3 percent-encodes
the names and unquote gives back the stored key. Without it S3 sends the key raw and
unquote turns `job_id=j%41` into `job_id=jA`, a key that does not exist.
"""

import os
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import listed_keys, listed_prefixes, next_token, start_dev
from test_tao_v2 import MINER, MINER_COLD, VALIDATOR, call

# 1000 objects sort before the special ones, so these come on a continuation page of
# every listing of the miner's folder (S3 pages hold 1000 keys).
FILLERS = 1000
SPECIAL_JOBS = ["j%41", "j+b", "j b", "jé"]
SPECIAL_NAMES = ["data_1.parquet", "data+2.parquet", "data 3.parquet", "données_4.parquet"]


@pytest.fixture(scope="module")
def api():
    yield from start_dev()


@pytest.fixture(scope="module")
def stored(api):
    """Uploads the fillers and the special keys through the miner's own POST policy;
    returns the folder and the special keys with their contents."""
    ts = int(time.time())
    message = f"s3:data:access:{MINER_COLD.ss58_address}:{MINER.ss58_address}:{ts}"
    r = requests.post(f"{api}/get-folder-access", json={
        "coldkey": MINER_COLD.ss58_address, "hotkey": MINER.ss58_address,
        "timestamp": ts, "signature": MINER.sign(message.encode()).hex()})
    assert r.status_code == 200, r.text
    grant = r.json()
    folder = grant["folder"]
    special = {f"{folder}job_id={job}/{name}": os.urandom(1024 + i)
               for i, (job, name) in enumerate(zip(SPECIAL_JOBS, SPECIAL_NAMES))}
    uploads = {f"{folder}job_id=a_filler/f{i:04d}.bin": bytes(1024) for i in range(FILLERS)}
    uploads.update(special)
    session = requests.Session()

    def put(item):
        key, content = item
        up = session.post(grant["url"], data={**grant["fields"], "key": key}, files={"file": ("f", content)})
        assert up.status_code == 204, up.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, uploads.items()))
    return folder, special


def body_signed(api, path, commitment, body):
    ts = int(time.time())
    r = requests.post(f"{api}{path}", json={
        "hotkey": VALIDATOR.ss58_address, "timestamp": ts,
        "signature": VALIDATOR.sign(commitment.format(ts=ts).encode()).hex(), **body})
    assert r.status_code == 200, r.text
    return r.json()


def read(url):
    """GETs a list URL the service signed; checks it asks for URL-encoded names."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["encoding-type"] == ["url"], url
    r = requests.get(url)
    assert r.status_code == 200, r.text
    return r.text


def all_pages(first_url, url_after):
    """Every key of a listing: the first URL, then the URL the service signs for each
    NextContinuationToken. Returns the keys and how many pages they took."""
    xml = read(first_url)
    keys, pages = listed_keys(xml), 1
    while (token := next_token(xml)) is not None:
        xml = read(url_after(token))
        keys += listed_keys(xml)
        pages += 1
        assert pages < 10
    return keys, pages


def assert_downloads(api, keys, special):
    """The GET URLs a validator asks for with the keys it read name the stored objects."""
    miner = MINER.ss58_address
    urls = body_signed(api, "/get-file-presigned-urls",
                       f"s3:validator:files:{miner}:{VALIDATOR.ss58_address}:{{ts}}",
                       {"miner_hotkey": miner, "file_keys": keys})
    assert urls["invalid_keys"] == []
    for key in keys:
        got = requests.get(urls["file_urls"][key]["presigned_url"])
        assert got.status_code == 200, (key, got.text)
        assert got.content == special[key]


def test_global_and_miner_list_urls_and_their_continuation_pages(api, stored):
    folder, special = stored
    miner = MINER.ss58_address
    access = lambda token: body_signed(api, "/get-validator-access", "s3:validator:access:{ts}",
                                       {"continuation_token": token})
    first = access(None)["urls"]
    keys, pages = all_pages(first["global"]["list_all_data"],
                            lambda t: access(t)["urls"]["global"]["list_all_data"])
    assert pages >= 2
    assert [k for k in keys if "a_filler" not in k] == sorted(special)
    assert folder in listed_prefixes(read(first["miners"]["list_all_miners"]))

    specific = lambda token: body_signed(api, "/get-miner-specific-access",
                                         f"s3:validator:miner:{miner}:{{ts}}",
                                         {"miner_hotkey": miner, "continuation_token": token})
    keys, _ = all_pages(specific(None)["miner_url"], lambda t: specific(t)["miner_url"])
    assert [k for k in keys if "a_filler" not in k] == sorted(special)

    def miner_list(token):
        r = call(api, "/get-miner-list", VALIDATOR, {"miner_hotkey": miner, "continuation_token": token})
        assert r.status_code == 200, r.text
        return r.json()["list_url"]

    keys, pages = all_pages(miner_list(None), miner_list)
    assert pages >= 2
    found = [k for k in keys if "a_filler" not in k]
    assert found == sorted(special)
    assert_downloads(api, found, special)


def test_job_folder_list_urls(api, stored):
    folder, special = stored
    answer = body_signed(api, "/get-folder-presigned-urls", f"s3:validator:folders:{VALIDATOR.ss58_address}:{{ts}}",
                         {"miner_hotkeys": [MINER.ss58_address]})
    jobs = answer["folder_urls"][MINER.ss58_address]["job_folders"]
    assert sorted(j["job_id"] for j in jobs) == sorted(["a_filler", *SPECIAL_JOBS])
    found = []
    for job in jobs:
        if job["job_id"] == "a_filler":
            continue
        keys = listed_keys(read(job["presigned_url"]))
        assert len(keys) == 1 and keys[0].startswith(f"{folder}job_id={job['job_id']}/"), keys
        found += keys
    assert sorted(found) == sorted(special)
    assert_downloads(api, found, special)
