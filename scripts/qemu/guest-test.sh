#!/usr/bin/env bash
# Real-kernel guest tests (issue 4). Entry point for CI and for people.
#
#   bash scripts/qemu/guest-test.sh [--only smoke|ixgbevf|pmd]... [--verbose]
#
# Steps: fetch.sh (Debian packages, cached) -> mkinitramfs.sh -> one QEMU
# guest per test (run-guest.sh), each under FG_GUEST_TIMEOUT seconds (55).
#
# Tests:
#   smoke    guest boots, vfio modules load, /dev/vfio/vfio, intel-iommu with
#            interrupt remapping, and a vfio-pci bind of QEMU's edu device
#   ixgbevf  "ixgbevf bring-up + traffic": Linux's ixgbevf against the model
#            served over vfio-user (floodgate-sim serve)
#   pmd      "pmd via vfio-pci": our PMD in the guest, through vfio-pci and the
#            emulated IOMMU, against the same served model
# A test whose prerequisites are missing prints "skipped: <test>: <why>";
# nothing passes silently.
#
# Exit: 0 every test that ran passed (skips are printed), 1 a test failed.
# If Debian's archive is unreachable and nothing is cached, nothing can run:
# it prints the one line "skipped: no network to Debian's archive ..." and
# exits FG_GUEST_SKIP_RC (default 0, so `set -e` callers go on; set it to 77
# to tell a skip from a pass by the exit code).
#
# Environment:
#   FG_SIM_BIN        floodgate-sim binary with a `serve --socket PATH`
#                     subcommand (default: target/{release,debug}/floodgate-sim)
#   FG_PMD_GUEST_BIN  statically linked PMD test program for the pmd test
#                     (default: none -> skipped)
#   FG_GUEST_TIMEOUT  per-guest timeout in seconds (default 55)
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
WORK=${FG_QEMU_WORK:-$HERE/work}
TIMEOUT=${FG_GUEST_TIMEOUT:-55}
VERBOSE=()
ONLY=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --only) ONLY+=("$2"); shift 2 ;;
        --verbose) VERBOSE=(--verbose); shift ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "guest-test: unknown argument $1" >&2; exit 2 ;;
    esac
done
wanted() { [[ ${#ONLY[@]} == 0 ]] && return 0; local o; for o in "${ONLY[@]}"; do [[ $o == "$1" ]] && return 0; done; return 1; }

FAILED=0
PASSED=0
SKIPPED=0
skip() { echo "skipped: $1: $2"; SKIPPED=$((SKIPPED + 1)); }

# --- prerequisites -----------------------------------------------------------
fetch_out=$(bash "$HERE/fetch.sh"); rc=$?
if [[ $rc == 77 ]]; then
    echo "$fetch_out"
    exit "${FG_GUEST_SKIP_RC:-0}"
elif [[ $rc != 0 ]]; then
    echo "FAIL guest tests: scripts/qemu/fetch.sh failed (exit $rc)"
    exit 1
fi
mkdir -p "$WORK"

# Extra static binaries for the initramfs (the PMD test program, later more).
mk_args=()
if [[ -n ${FG_PMD_GUEST_BIN:-} ]]; then
    mk_args+=(--bin "$FG_PMD_GUEST_BIN:/bin/fg-pmd-test")
fi
if ! bash "$HERE/mkinitramfs.sh" "${mk_args[@]}" 2>"$WORK/mkinitramfs.log"; then
    cat "$WORK/mkinitramfs.log" >&2
    echo "FAIL guest tests: scripts/qemu/mkinitramfs.sh failed"
    exit 1
fi

# run_scenario LABEL NAME [run-guest args]: boot one guest, judge its output.
# PASS needs: QEMU exited 0 (guest powered off), FG-DONE with failures=0, and
# at least one FG-RESULT besides the module load.
run_scenario() {
    local label=$1 name=$2; shift 2
    local out rc secs
    out=$(bash "$HERE/run-guest.sh" --test "$name" --timeout "$TIMEOUT" "${VERBOSE[@]}" "$@" \
        2>"$WORK/$name.run.log"); rc=$?
    secs=$(cat "$WORK/$name.log.seconds" 2>/dev/null || echo '?')
    if [[ $rc == 0 ]] && grep -q "^FG-DONE test=$name failures=0$" <<<"$out" \
        && [[ $(grep -c '^FG-RESULT ' <<<"$out") -ge 2 ]] && ! grep -q '^FG-RESULT [^ ]* FAIL' <<<"$out"; then
        echo "PASS $label (${secs}s)"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $label (qemu exit $rc, ${secs}s; console log $WORK/$name.log)"
        grep -E '^FG-RESULT [^ ]* FAIL|^FG-DONE' <<<"$out" | sed 's/^/  /'
        grep -q '^FG-DONE' <<<"$out" || { echo "  guest did not finish; last console lines:"; tail -n 15 "$WORK/$name.log" | sed 's/^/  | /'; }
        sed 's/^/  /' "$WORK/$name.run.log"
        FAILED=$((FAILED + 1))
    fi
}

# --- the vfio-user model server ------------------------------------------------
SERVER_PID=
find_sim() {
    local c
    for c in "${FG_SIM_BIN:-}" "$REPO/target/release/floodgate-sim" "$REPO/target/debug/floodgate-sim"; do
        [[ -n $c && -x $c ]] || continue
        "$c" serve --help >/dev/null 2>&1 && { echo "$c"; return 0; }
    done
    return 1
}
# start_server SOCKET ARGS...: start `floodgate-sim serve`, wait for its socket.
start_server() {
    local sock=$1; shift
    rm -f "$sock"
    "$SIM" serve --socket "$sock" "$@" >"$sock.log" 2>&1 &
    SERVER_PID=$!
    local i
    for i in $(seq 100); do
        [[ -S $sock ]] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "  floodgate-sim serve did not create $sock; its log:" >&2
    sed 's/^/  | /' "$sock.log" >&2
    stop_server
    return 1
}
stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=
}
trap stop_server EXIT

SIM=$(find_sim) || SIM=
NO_SERVER="needs the vfio-user model server (floodgate-sim serve), not built yet"

# --- tests ---------------------------------------------------------------------
if wanted smoke; then
    run_scenario "guest boots with vfio + intel-iommu" smoke --edu
fi

if wanted ixgbevf; then
    if [[ -z $SIM ]]; then
        skip "ixgbevf bring-up + traffic" "$NO_SERVER"
    elif start_server "$WORK/ixgbevf.sock"; then
        run_scenario "ixgbevf bring-up + traffic" ixgbevf --vfio-user "$WORK/ixgbevf.sock"
        stop_server
    else
        echo "FAIL ixgbevf bring-up + traffic (server did not start)"; FAILED=$((FAILED + 1))
    fi
fi

if wanted pmd; then
    if [[ -z $SIM ]]; then
        skip "pmd via vfio-pci" "$NO_SERVER"
    elif [[ -z ${FG_PMD_GUEST_BIN:-} ]]; then
        skip "pmd via vfio-pci" "needs a static PMD test program (FG_PMD_GUEST_BIN), not built yet"
    elif start_server "$WORK/pmd.sock"; then
        # ixgbevf stays out so that the VF is free for vfio-pci.
        run_scenario "pmd via vfio-pci" pmd --vfio-user "$WORK/pmd.sock" --append fg.skipmod=ixgbevf
        stop_server
    else
        echo "FAIL pmd via vfio-pci (server did not start)"; FAILED=$((FAILED + 1))
    fi
fi

echo "guest-test: $PASSED passed, $FAILED failed, $SKIPPED skipped ($SECONDS s in all)"
[[ $FAILED == 0 ]]
