#!/usr/bin/env bash
# Runs every test of uid2-rs on a fresh machine: formatting and lints, the Rust unit and
# integration tests, the conformance suite against the official Python SDK, and the browser SDK's
# unit tests. Installs what it needs (Python venv with the pinned SDK) idempotently.
#
#   ./scripts/test.sh            everything
#   SKIP_LINT=1 ./scripts/test.sh    skip cargo fmt/clippy
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# ---- prerequisites -------------------------------------------------------------------------------
step "python environment (.venv with the official uid2-client)"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import uid2_client, pytest" 2>/dev/null \
   || ! .venv/bin/pip freeze 2>/dev/null | grep -qi "^uid2.client==2.9.0"; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

step "PostgreSQL server binaries for the fleet tests"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
# PostgreSQL refuses to run as root; the tests' throwaway clusters run as this user.
if [ "$(id -u)" = 0 ] && ! id uid2pg >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin uid2pg
fi

# ---- Rust -----------------------------------------------------------------------------------------
if [ -z "${SKIP_LINT:-}" ]; then
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
fi

step "cargo build (workspace, all targets)"
cargo build --workspace --all-targets --quiet

step "cargo test (including the PostgreSQL fleet tests)"
cargo test --workspace --quiet -- --include-ignored

# ---- conformance with the official SDKs -----------------------------------------------------------
step "python conformance suite (official uid2-client)"
.venv/bin/python -m pytest -q tests/python

# ---- browser SDK -----------------------------------------------------------------------------------
step "browser SDK unit tests (node:test)"
node --test --test-reporter=dot sdk/js/test/

step "the demo (operator, publisher, SSP) in headless Chromium (tests/browser)"
# Debian's Chromium, never a browser downloaded by Playwright; playwright-core from the lock file.
if [ ! -x /usr/bin/chromium ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# npm ci when node_modules is missing or does not hold exactly the versions of the lock file.
if ! (cd tests/browser && node -e '
  const lock = require("./package-lock.json").packages;
  for (const [path, pkg] of Object.entries(lock)) {
    if (!path) continue;
    if (require("./" + path + "/package.json").version !== pkg.version) process.exit(1);
  }' 2>/dev/null); then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
UID2_DEMO_BIN="$ROOT/target/debug/uid2-demo" node --test --test-reporter=spec tests/browser/

step "all tests passed"
