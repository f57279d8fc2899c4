#!/usr/bin/env bash
# Runs every test of uid2-rs on a fresh Debian machine: formatting and lints, the Rust unit and
# integration tests (the PostgreSQL fleet tests included, on throwaway clusters), the conformance
# suite against the official Python SDK, the browser SDK's unit tests, and the demo in headless
# Chromium. First installs what is missing, idempotently: Debian's postgresql, chromium,
# python3-venv and nodejs/npm (as root, or through sudo), a Python venv with the pinned official
# SDK, and playwright-core, Prebid.js and esbuild from tests/browser's lock file.
#
#   ./scripts/test.sh                everything
#   SKIP_LINT=1 ./scripts/test.sh    skip cargo fmt/clippy
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

step() { printf '\n==> %s\n' "$*"; }
as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

# ---- prerequisites (before anything long, so a missing one shows at once) ------------------------
step "system packages (postgresql, chromium, python3-venv, nodejs)"
packages=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
[ -x /usr/bin/chromium ] || packages+=(chromium)
python3 -c "import ensurepip, venv" 2>/dev/null || packages+=(python3-venv)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [ ${#packages[@]} -gt 0 ]; then
  # The tests start their own clusters: keep Debian from creating and starting a system one.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/uid2-rs.conf >/dev/null
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $node_major found; tests/browser needs Node.js 20 or later" >&2
  exit 1
fi
# PostgreSQL refuses to run as root; the tests' throwaway clusters then run as this user.
if [ "$(id -u)" = 0 ] && ! id uid2pg >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin uid2pg
fi

step "python environment (.venv with the official uid2-client)"
# A venv left without pip by an interrupted run is made again.
if [ ! -x .venv/bin/pip ]; then
  python3 -m venv --clear .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt

step "playwright-core, Prebid.js and esbuild (tests/browser, from its lock file)"
# npm ci when node_modules is missing or does not hold exactly the versions of the lock file
# (optional packages for other platforms, such as esbuild's other binaries, are never there).
if ! (cd tests/browser && node -e '
  const lock = require("./package-lock.json").packages;
  for (const [path, pkg] of Object.entries(lock)) {
    if (!path) continue;
    if (pkg.optional && !require("fs").existsSync(path)) continue;
    if (require("./" + path + "/package.json").version !== pkg.version) process.exit(1);
  }' 2>/dev/null); then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
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

step "the demo (operator, publisher, SSP) and Prebid.js's UID2 module in headless Chromium (tests/browser)"
UID2_DEMO_BIN="$TARGET/debug/uid2-demo" node --test --test-reporter=spec tests/browser/

step "all tests passed"
