"""Shared fixtures of the Python conformance suite.

The suite drives our binaries with the official `uid2-client` package. Binaries are found under
`target/debug` (or `UID2_<NAME>_BIN`); `scripts/test.sh` builds them first.
"""

import json
import os
import pathlib
import select
import shutil
import subprocess
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / os.environ.get("UID2_PROFILE", "debug")


# Our binaries run without the developer's UID2_* settings (a UID2_CONFIG in the shell must not
# change what the suite sees); the suite passes its own flags.
CHILD_ENV = {k: v for k, v in os.environ.items() if not k.startswith("UID2_")}


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


class Operator:
    """A real `uid2 serve` on a free port with its own SQLite store, and the clients made for it."""

    def __init__(self, salt_buckets=4096, serve_args=()):
        self.dir = tempfile.mkdtemp(prefix="uid2-test-")
        self.store = f"sqlite://{self.dir}/uid2.db"
        self.uid2 = binary("uid2")
        self.salt_buckets = salt_buckets
        self.serve_args = list(serve_args)
        self.process = None
        self.url = None

    def cli(self, *args):
        out = subprocess.run([self.uid2, "--store", self.store, "--salt-buckets", str(self.salt_buckets), *args],
                             capture_output=True, text=True, env=CHILD_ENV)
        if out.returncode != 0:
            raise RuntimeError(f"uid2 {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def add_client(self, name, site_id, roles):
        return json.loads(self.cli("client", "add", "--name", name, "--site-id", str(site_id), "--roles", roles, "--json"))

    def start(self):
        # stderr goes to a file: a pipe nobody reads would stall the operator once it filled.
        self.stderr = open(os.path.join(self.dir, "serve.log"), "w+")
        self.process = subprocess.Popen(
            [self.uid2, "--store", self.store, "serve", "--listen", "127.0.0.1:0", *self.serve_args],
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=CHILD_ENV)
        deadline = time.time() + 30
        while time.time() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                if "listening on" in line:
                    self.url = line.strip().split("listening on ")[1]
                    return self
                if not line and self.process.poll() is not None:
                    break
        self.stderr.seek(0)
        raise RuntimeError("uid2 serve did not start: " + (self.stderr.read() if self.process.poll() is not None else "timeout"))

    def stop(self):
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def standard_operator(serve_args=()):
    """An operator with a publisher, a DSP, a sharer, an advertiser and an opt-out portal."""
    op = Operator(serve_args=serve_args)
    op.cli("init")
    op.cli("site", "add", "--id", "1001", "--name", "Publisher", "--domain", "localhost")
    op.cli("site", "add", "--id", "2001", "--name", "DSP")
    op.cli("site", "add", "--id", "3001", "--name", "Advertiser")
    op.publisher = op.add_client("publisher", 1001, "generator")
    op.dsp = op.add_client("dsp", 2001, "id_reader")
    op.sharer = op.add_client("sharer", 1001, "sharer")
    op.advertiser = op.add_client("advertiser", 3001, "mapper")
    op.optout_portal = op.add_client("optout-portal", 1001, "optout")
    op.cstg = json.loads(op.cli("cstg", "add", "--site-id", "1001", "--json"))
    return op.start()


@pytest.fixture(scope="session")
def operator():
    op = standard_operator()
    yield op
    op.stop()
