"""Shared fixtures: `s3-auth-api dev`, started from the binary in S3_AUTH_API_BIN."""

import os
import socket
import subprocess
import tempfile
import time
import urllib.parse
import xml.etree.ElementTree as ET

import pytest
import requests


S3_NS = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}


def listed_keys(xml):
    """The keys of a ListObjectsV2 answer, read as Subnet 46's and Subnet 13's validators
    read them: ElementTree with S3's namespace, then urllib.parse.unquote on each Key."""
    root = ET.fromstring(xml)
    return [urllib.parse.unquote(c.find("s3:Key", S3_NS).text) for c in root.findall(".//s3:Contents", S3_NS)]


def listed_prefixes(xml):
    """The common prefixes of a ListObjectsV2 answer, unquoted as the validators do."""
    root = ET.fromstring(xml)
    return [urllib.parse.unquote(p.find("s3:Prefix", S3_NS).text) for p in root.findall(".//s3:CommonPrefixes", S3_NS)]


def next_token(xml):
    """The NextContinuationToken of a truncated ListObjectsV2 answer, else None."""
    token = ET.fromstring(xml).find("s3:NextContinuationToken", S3_NS)
    return None if token is None else token.text


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dev(*extra_args):
    """Starts `dev` on free ports in a fresh data directory (also its working directory,
    so no stray `.env` is read) and waits until /healthcheck answers 200. Yields the base
    URL; stops the server afterwards."""
    binary = os.environ.get("S3_AUTH_API_BIN")
    if not binary or not os.path.exists(binary):
        pytest.fail("S3_AUTH_API_BIN must point at the built s3-auth-api binary (scripts/test.sh sets it)")
    port, s3_port = free_port(), free_port()
    data = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [binary, "dev", "--port", str(port), "--s3-port", str(s3_port), "--data-dir", data, *extra_args],
        cwd=data,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            if requests.get(f"{base}/healthcheck", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"dev server exited with {proc.returncode} before becoming healthy")
        if time.time() > deadline:
            proc.kill()
            pytest.fail("dev server did not become healthy in 30 s")
        time.sleep(0.1)
    yield base
    proc.terminate()
    proc.wait(timeout=10)
