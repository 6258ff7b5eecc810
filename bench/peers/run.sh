#!/usr/bin/env bash
# Runs the peer CEL engines over csrgate's benchmark fixture.
#
#   bash bench/peers/run.sh FIXTURE OUTDIR
#
# FIXTURE is the cel-fixture.json that csrgate's own bench writes (target/bench/cel-fixture.json);
# OUTDIR receives peer-celjs.json and peer-celpython.json. Installs what it needs first:
#   - cel-js:     npm ci into bench/peers/celjs/node_modules (from the committed lock)
#   - cel-python: a venv at <repo>/target/bench/venv, pip install -r requirements.txt
# Both installs are skipped when the lock / requirements have not changed since the last one.
# The engines run one after the other, so they do not compete for the machine's cores.
set -euo pipefail

die() {
  echo "bench/peers/run.sh: $*" >&2
  exit 1
}

# `--install-only` installs both engines and stops: bench/run.sh runs it during the build.
install_only=false
if [[ $# -eq 1 && "$1" == "--install-only" ]]; then
  install_only=true
else
  [[ $# -eq 2 ]] || die "usage: bash bench/peers/run.sh FIXTURE OUTDIR | --install-only"
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

if ! $install_only; then
  [[ -f "$1" ]] || die "fixture not found: $1 (run csrgate's bench first; it writes target/bench/cel-fixture.json)"
  FIXTURE="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  mkdir -p "$2" || die "cannot create output directory: $2"
  OUTDIR="$(cd "$2" && pwd)"
fi

command -v node >/dev/null || die "node not found (cel-js needs Node.js >= 20.19)"
command -v npm >/dev/null || die "npm not found"
command -v python3 >/dev/null || die "python3 not found (cel-python needs Python >= 3.10)"

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --- cel-js -------------------------------------------------------------------------------
CELJS="$HERE/celjs"
CELJS_STAMP="$CELJS/node_modules/.csrgate-lock.sha256"
if [[ -f "$CELJS_STAMP" && "$(cat "$CELJS_STAMP")" == "$(sha "$CELJS/package-lock.json")" ]]; then
  echo "cel-js: node_modules up to date"
else
  echo "cel-js: npm ci"
  npm ci --prefix "$CELJS" --no-audit --no-fund --loglevel=error \
    || die "npm ci failed in $CELJS (is the npm registry reachable?)"
  sha "$CELJS/package-lock.json" >"$CELJS_STAMP"
fi

# --- cel-python ---------------------------------------------------------------------------
VENV="$REPO/target/bench/venv"
REQS="$HERE/celpython/requirements.txt"
VENV_STAMP="$VENV/.csrgate-requirements.sha256"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "cel-python: creating venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" || die "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)"
fi
if [[ -f "$VENV_STAMP" && "$(cat "$VENV_STAMP")" == "$(sha "$REQS")" ]] \
  && "$VENV/bin/python" -c 'import celpy' 2>/dev/null; then
  echo "cel-python: venv up to date"
else
  echo "cel-python: pip install -r requirements.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" \
    || die "pip install failed for $REQS (is PyPI reachable?)"
  sha "$REQS" >"$VENV_STAMP"
fi

$install_only && exit 0

# --- run ----------------------------------------------------------------------------------
node "$CELJS/bench.mjs" "$OUTDIR/peer-celjs.json" "$FIXTURE" \
  || die "cel-js benchmark failed (see the message above)"
"$VENV/bin/python" "$HERE/celpython/bench.py" "$OUTDIR/peer-celpython.json" "$FIXTURE" \
  || die "cel-python benchmark failed (see the message above)"

echo "wrote $OUTDIR/peer-celjs.json and $OUTDIR/peer-celpython.json"
