"""Shared fixtures of the Python conformance suite.

The suite drives our binaries with the official `uid2-client` package. Binaries are found through
environment variables set by `scripts/test.sh` (or defaults under `target/debug`).
"""

import json
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / os.environ.get("UID2_PROFILE", "debug")


def binary(name: str) -> str:
    path = os.environ.get("UID2_" + name.upper().replace("-", "_") + "_BIN", str(TARGET / name))
    if not pathlib.Path(path).exists():
        pytest.fail(f"{path} is missing: build the workspace first (scripts/test.sh does)")
    return path


@pytest.fixture(scope="session")
def bridge():
    """Runs one `uid2-proto-bridge` command and returns its JSON answer."""
    path = binary("uid2-proto-bridge")

    def call(**command):
        out = subprocess.run([path], input=json.dumps(command), capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    return call
