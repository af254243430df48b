"""Starts `tether sim` once per test session and hands its endpoints file to the tests.

TETHER_BIN names the tether binary (default: target/debug/tether of this repository).
"""
import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def endpoints():
    binary = os.environ.get("TETHER_BIN", str(REPO / "target" / "debug" / "tether"))
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "endpoints.json"
        proc = subprocess.Popen([binary, "sim", "--endpoints-file", str(path), "--delay-ms", "200"])
        try:
            deadline = time.time() + 30
            while not path.exists():
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"tether sim did not write {path} (exit code {proc.poll()})")
                time.sleep(0.05)
            yield json.loads(path.read_text())
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def sim_origin(url):
    """scheme://host:port of a simulator URL (where /_sim lives)."""
    parts = url.split("/")
    return "/".join(parts[:3])


def sim_call(url, method, path, body=None):
    """Calls a simulator's /_sim control API and returns the decoded JSON (or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(sim_origin(url) + "/_sim" + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None
