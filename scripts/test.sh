#!/usr/bin/env bash
# The whole floodgate test suite: unit and integration tests of every crate, doc tests, the
# examples and the demo as smoke tests, and the QEMU guest tests (which print one "skipped: ..."
# line each when they cannot run here).
#
#   ./scripts/test.sh            everything
#   ./scripts/test.sh --quick    cargo tests only
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[ "${1:-}" = "--quick" ] && quick=1

step() { printf '\n=== %s ===\n' "$*"; }
# Cargo's output directory (CARGO_TARGET_DIR, build.target-dir or target/): the smoke runs
# below leave their output files there.
TARGET=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET" ] || TARGET=${CARGO_TARGET_DIR:-target}

step "cargo test (workspace, all targets)"
cargo test --workspace --all-targets
step "doc tests"
cargo test --workspace --doc

if [ "$quick" = 1 ]; then
    exit 0
fi

step "demo smoke run (built-in NIC model, no hardware, no root)"
# The documented demo command, at the default rate (0.5 Mpps). The model runs in
# lockstep with the filter loop, so a loaded CI machine lowers the offered load (reported as
# generator_behind_schedule) instead of overflowing the VF ring.
cargo run --release --quiet -- demo --seconds 5 --json > "$TARGET/demo.json"
python3 - "$TARGET/demo.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["invariant_holds"], d
assert d["rx_packets"] > 0, d
assert d["all_legit_passed"], d
assert d["dropped"] == d["generated"]["flood"], d
assert d["nic_rx_missed"] == 0, d
assert d["nic_mode"] == "lockstep", d
print("demo: rx %d, dropped %d (the whole flood), passed %d (every legitimate query), invariant holds"
      % (d["rx_packets"], d["dropped"], d["passed"]))
PY

step "soak, 1 minute (floodgate run over vfio-user, steady flood, a reload every second)"
# The 10-minute run recorded in docs/performance.md is the same script: ./scripts/soak.sh 10.
# Prints one "skipped: ..." line without root (the daemon's TAP).
bash scripts/soak.sh 1

step "pmd example rx_drop against the model"
cargo run --release --quiet -p floodgate-pmd --example rx_drop -- --seconds 1 | tee "$TARGET/rx_drop.out"
# The model checks checksums like the NIC: a broken template would be dropped as bad descriptors.
grep -q '^total: [1-9][0-9]* packets' "$TARGET/rx_drop.out" \
    || { echo "rx_drop received nothing"; exit 1; }
if grep -q 'dropped bad [1-9]' "$TARGET/rx_drop.out"; then
    echo "rx_drop: the driver dropped bad descriptors"; exit 1
fi

step "DNS under flood (veth namespaces, dnsmasq, floodgate run on AF_XDP and the stand-in filter), short and low-rate"
# Prints one "skipped: ..." line when not root or dnsmasq is missing; fails if a legitimate
# query goes unanswered without the flood or with the filter on.
bash scripts/dns-under-flood.sh --quick --filter xdp-count

if [ -x scripts/qemu/guest-test.sh ]; then
    step "QEMU guest tests"
    bash scripts/qemu/guest-test.sh
else
    echo "skipped: QEMU guest tests: scripts/qemu/guest-test.sh not present in this tree"
fi
