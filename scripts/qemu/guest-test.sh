#!/usr/bin/env bash
# Real-kernel guest tests: Linux's ixgbevf, our PMD and the daemon in a QEMU guest, against
# the model served over vfio-user. Entry point for CI and for people.
#
#   bash scripts/qemu/guest-test.sh [--only smoke|ixgbevf|pmd|daemon]... [--verbose]
#
# Steps: fetch.sh (Debian packages, cached) -> cargo build of floodgate-sim
# (host) and of fg-pmd-test (pmd/examples/guest_pmd.rs) and floodgate (the
# daemon), both static, for the guest -> mkinitramfs.sh -> one QEMU guest per
# test (run-guest.sh), each
# under FG_GUEST_TIMEOUT seconds (55), with its `floodgate-sim serve --once`
# model servers; the servers' final counters are checked too.
#
# Tests:
#   smoke    guest boots, vfio modules load, /dev/vfio/vfio, intel-iommu with
#            interrupt remapping, and a vfio-pci bind of QEMU's edu device
#   ixgbevf  "ixgbevf bring-up + traffic": Linux's ixgbevf against the model
#            served over vfio-user (an 82599 VF answering ARP/ping at 10.0.0.1
#            with a UDP generator, and an X540 VF for jumbo frames); as root,
#            the host also sends frames with bad IPv4/UDP checksums (and UDP
#            checksum 0) to the 82599 VF, and ixgbevf's rx_csum_offload_errors
#            must rise by exactly the expected count
#   pmd      "pmd via vfio-pci": our PMD in the guest, through vfio-pci and the
#            emulated IOMMU, on the model's generated traffic, plus a DMA to
#            an unmapped IOVA that must show up in the model's fault record
#   daemon   "floodgate run via vfio-pci": the daemon itself (`floodgate run
#            --config`) on the model's VF in the guest; the host sends a
#            counted DNS mix (flood + known clients) once the daemon is up, and
#            the guest checks its final summary, its Prometheus endpoint and
#            its TAP's counters. Needs root (a network namespace), else skipped.
# A failed build is a FAIL, not a skip; nothing passes silently.
# Details: docs/qemu.md.
#
# Exit: 0 every test that ran passed (skips are printed), 1 a test failed.
# If Debian's archive is unreachable and nothing is cached, nothing can run:
# it prints the one line "skipped: no network to Debian's archive ..." and
# exits FG_GUEST_SKIP_RC (default 0, so `set -e` callers go on; set it to 77
# to tell a skip from a pass by the exit code).
#
# Environment:
#   FG_SIM_BIN        floodgate-sim binary with a `serve --socket PATH`
#                     subcommand (default: built here, <target dir>/release/floodgate-sim)
#   FG_PMD_GUEST_BIN  statically linked PMD test program for the pmd test
#                     (default: built here from pmd/examples/guest_pmd.rs)
#   FG_FLOODGATE_GUEST_BIN  statically linked floodgate for the daemon test
#                     (default: built here, the root package's bin)
#   FG_GUEST_TIMEOUT  per-guest timeout in seconds (default 55)
#   CARGO_TARGET_DIR  honoured: binaries are looked up where cargo puts them (asked
#                     with `cargo metadata`, so build.target-dir in .cargo/config too)
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
        -h|--help) sed -n '2,49p' "$0"; exit 0 ;;
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

# Cargo's output directory: CARGO_TARGET_DIR, build.target-dir or <repo>/target. Cargo
# itself resolves a relative CARGO_TARGET_DIR against the directory it runs in, which is $REPO.
TARGET=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
if [[ -z $TARGET ]]; then
    TARGET=${CARGO_TARGET_DIR:-target}
    [[ $TARGET == /* ]] || TARGET=$REPO/$TARGET
fi

# --- what the guest tests need from this tree ------------------------------------
# floodgate-sim (the model's vfio-user server) for the host, and the PMD test
# program fg-pmd-test (pmd/examples/guest_pmd.rs) linked statically for the
# guest. Both are built here unless FG_SIM_BIN / FG_PMD_GUEST_BIN name them.
BUILD_ERR=
build_sim() {
    [[ -n ${FG_SIM_BIN:-} ]] && return 0
    wanted ixgbevf || wanted pmd || wanted daemon || return 0
    (cd "$REPO" && cargo build --release -p floodgate-sim --bin floodgate-sim) >"$WORK/build-sim.log" 2>&1 \
        || BUILD_ERR="cargo build -p floodgate-sim failed (log $WORK/build-sim.log)"
}
PMD_BIN=
build_pmd() {
    wanted pmd || return 0
    local src=${FG_PMD_GUEST_BIN:-}
    if [[ -z $src ]]; then
        # --target keeps crt-static away from build scripts and proc macros. A test
        # program needs neither thin LTO, one codegen unit nor debug info (the
        # workspace's release profile): cheaper to build in CI.
        if ! (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_LTO=false cargo build --release \
            -p floodgate-pmd --example guest_pmd --target x86_64-unknown-linux-gnu) \
            >"$WORK/build-pmd.log" 2>&1; then
            BUILD_ERR="${BUILD_ERR:+$BUILD_ERR; }static build of fg-pmd-test failed (log $WORK/build-pmd.log)"
            return 0
        fi
        src=$TARGET/x86_64-unknown-linux-gnu/release/examples/guest_pmd
    fi
    # Without debug info the initramfs is 10 MB smaller (faster to load under TCG).
    strip -o "$WORK/fg-pmd-test" "$src" 2>/dev/null || cp "$src" "$WORK/fg-pmd-test"
    PMD_BIN=$WORK/fg-pmd-test
}
# The daemon, `floodgate` (root package), static for the guest, built like fg-pmd-test.
FG_BIN=
build_floodgate() {
    wanted daemon || return 0
    local src=${FG_FLOODGATE_GUEST_BIN:-}
    if [[ -z $src ]]; then
        if ! (cd "$REPO" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_PROFILE_RELEASE_DEBUG=0 \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_LTO=false cargo build --release \
            -p floodgate --bin floodgate --target x86_64-unknown-linux-gnu) \
            >"$WORK/build-floodgate.log" 2>&1; then
            BUILD_ERR="${BUILD_ERR:+$BUILD_ERR; }static build of floodgate failed (log $WORK/build-floodgate.log)"
            return 0
        fi
        src=$TARGET/x86_64-unknown-linux-gnu/release/floodgate
    fi
    strip -o "$WORK/floodgate" "$src" 2>/dev/null || cp "$src" "$WORK/floodgate"
    FG_BIN=$WORK/floodgate
}
build_sim
build_pmd
build_floodgate

mk_args=()
[[ -n $PMD_BIN ]] && mk_args+=(--bin "$PMD_BIN:/bin/fg-pmd-test")
[[ -n $FG_BIN ]] && mk_args+=(--bin "$FG_BIN:/bin/floodgate")
if ! bash "$HERE/mkinitramfs.sh" "${mk_args[@]}" 2>"$WORK/mkinitramfs.log"; then
    cat "$WORK/mkinitramfs.log" >&2
    echo "FAIL guest tests: scripts/qemu/mkinitramfs.sh failed"
    exit 1
fi

# run_scenario LABEL NAME [run-guest args]: boot one guest; sets GUEST_OK
# (0/1), GUEST_WHY (what failed), GUEST_SECS. The guest passes when QEMU
# exited 0 (guest powered off), FG-DONE says failures=0, no FG-RESULT says
# FAIL, and there are at least two results (the module load and one more).
GUEST_OK=0
GUEST_WHY=
GUEST_SECS=
run_scenario() {
    local name=$2; shift 2
    local out rc
    out=$(bash "$HERE/run-guest.sh" --test "$name" --timeout "$TIMEOUT" "${VERBOSE[@]}" "$@" \
        2>"$WORK/$name.run.log"); rc=$?
    GUEST_SECS=$(cat "$WORK/$name.log.seconds" 2>/dev/null || echo '?')
    GUEST_WHY=
    if [[ $rc == 0 ]] && grep -q "^FG-DONE test=$name failures=0$" <<<"$out" \
        && [[ $(grep -c '^FG-RESULT ' <<<"$out") -ge 2 ]] && ! grep -q '^FG-RESULT [^ ]* FAIL' <<<"$out"; then
        GUEST_OK=1
    else
        GUEST_OK=0
        GUEST_WHY=$(
            echo "qemu exit $rc; console log $WORK/$name.log"
            grep -E '^FG-RESULT [^ ]* FAIL|^FG-DONE' <<<"$out"
            grep -q '^FG-DONE' <<<"$out" || { echo "guest did not finish; last console lines:"; tail -n 15 "$WORK/$name.log" | sed 's/^/| /'; }
            cat "$WORK/$name.run.log"
        )
    fi
}
# verdict LABEL PROBLEMS: one PASS or FAIL line (problems indented below it).
verdict() {
    local label=$1 problems=$2
    if [[ $GUEST_OK == 1 && -z $problems ]]; then
        echo "PASS $label (${GUEST_SECS}s)"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL $label (${GUEST_SECS}s)"
        { [[ -n $GUEST_WHY ]] && echo "$GUEST_WHY"; [[ -n $problems ]] && echo "$problems"; } | sed '/^$/d; s/^/  /'
        FAILED=$((FAILED + 1))
    fi
}

# --- the vfio-user model servers -----------------------------------------------
SERVER_PIDS=()
find_sim() {
    local c
    for c in "${FG_SIM_BIN:-}" "$TARGET/release/floodgate-sim" "$TARGET/debug/floodgate-sim"; do
        [[ -n $c && -x $c ]] || continue
        "$c" serve --help >/dev/null 2>&1 && { echo "$c"; return 0; }
    done
    return 1
}
# start_server SOCKET ARGS...: start `floodgate-sim serve --once` (log in
# SOCKET.log), wait for its socket. --once: it exits by itself when QEMU
# hangs up, after printing its counters ("client left: ...") to its log.
# SERVER_PREFIX (an array, e.g. `ip netns exec NS`) goes in front of the command.
SERVER_PREFIX=()
start_server() {
    local sock=$1; shift
    rm -f "$sock"
    "${SERVER_PREFIX[@]}" "$SIM" serve --socket "$sock" --once "$@" >"$sock.log" 2>&1 &
    local pid=$!
    SERVER_PIDS+=("$pid")
    local i
    for i in $(seq 100); do
        [[ -S $sock ]] && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "  floodgate-sim serve did not create $sock; its log:" >&2
    sed 's/^/  | /' "$sock.log" >&2
    stop_servers
    return 1
}
# finish_servers: wait (up to 10 s) for the servers to exit on their own,
# then stop them anyway.
finish_servers() {
    local i pid
    for i in $(seq 100); do
        local alive=0
        for pid in "${SERVER_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ $alive == 0 ]] && break
        sleep 0.1
    done
    stop_servers
}
stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    SERVER_PIDS=()
}
trap 'stop_servers; tcp_peer_stop; wire_stop; csum_stop' EXIT
# counter LOG NAME: the number after NAME in that server's final summary line.
counter() {
    grep -a 'client left:' "$1" | tail -n 1 | grep -oP "$2 \K[0-9]+" | head -n 1
}
# need_counter PROBLEMS-VAR LOG NAME OP VALUE WHY: append a problem unless the
# server's counter NAME satisfies OP VALUE (-eq, -ge).
need_counter() {
    local -n _p=$1
    local v
    v=$(counter "$2" "$3")
    if [[ -z $v ]]; then
        _p+="model server: no \"$3\" counter in $2 (did it print its summary?)"$'\n'
    elif ! test "$v" "$4" "$5"; then
        _p+="model server ($(basename "$2")): $3 = $v, expected $4 $5: $6"$'\n'
    fi
}
# replies LOG PEER: the ping replies the guest reported for PEER.
replies() {
    grep -a "^FG-INFO ping-replies [0-9]* $2" "$1" | tr -d '\r' | awk '{s += $3} END {print s + 0}'
}

# --- a TCP peer on the X540 server's wire (for TSO) ----------------------------
# As root, a network namespace with a veth pair: the server's wire side is one
# end (--af-packet), the namespace holds 10.0.1.3 and an HTTP client that
# fetches /blob (`seq 1 40000`) from the guest's busybox httpd, which sends it
# with sendfile (large TSO chains of page fragments), and records the body's
# length and SHA-256; then it fetches /done, the guest's signal to go on. Without root (or ip netns) the step is skipped
# with a line saying so.
TCP_NS=fgq$$
TCP_HOST=fgqa$$
TCP_ARGS=()
TCP_APPEND=
TCP_SKIP=
tcp_peer_start() {
    TCP_ARGS=(); TCP_APPEND=; TCP_SKIP=
    if [[ $(id -u) != 0 ]]; then TCP_SKIP="needs root for a network namespace"; return 0; fi
    if ! command -v ip >/dev/null || ! command -v python3 >/dev/null; then
        TCP_SKIP="needs ip (iproute2) and python3"; return 0
    fi
    if ! { ip netns add "$TCP_NS" && ip link add "$TCP_HOST" type veth peer name fgqb$$ \
        && ip link set fgqb$$ netns "$TCP_NS" && ip link set "$TCP_HOST" up \
        && ip -n "$TCP_NS" link set lo up && ip -n "$TCP_NS" link set fgqb$$ up \
        && ip -n "$TCP_NS" addr add 10.0.1.3/24 dev fgqb$$; } 2>"$WORK/tcp-peer.log"; then
        TCP_SKIP="could not set up a network namespace with a veth pair ($(tail -n 1 "$WORK/tcp-peer.log"))"
        tcp_peer_stop
        return 0
    fi
    local want
    want=$(seq 1 40000 | wc -c)
    rm -f "$WORK/tcp-peer.out"
    ip netns exec "$TCP_NS" timeout 55 python3 -c '
import ctypes, fcntl, hashlib, socket, struct, sys, time
want, out, ifname = int(sys.argv[1]), sys.argv[2], sys.argv[3]
# A veth leaves TCP checksums to the receiver (CHECKSUM_PARTIAL); what the model reads
# through AF_PACKET would carry no checksum. Turn TX checksumming off on this end
# (SIOCETHTOOL ETHTOOL_STXCSUM 0): the ethtool tool may not be installed.
ctl = socket.socket()
ev = ctypes.create_string_buffer(struct.pack("II", 0x17, 0))
fcntl.ioctl(ctl.fileno(), 0x8946, struct.pack("16sP16x", ifname.encode(), ctypes.addressof(ev)))
def get(path):
    c = socket.create_connection(("10.0.1.2", 8080), timeout=20)
    c.sendall(b"GET " + path + b" HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        b = c.recv(65536)
        if not b: break
        data += b
    c.close()
    return data.partition(b"\r\n\r\n")[2]
deadline = time.time() + 50
while True:
    try:
        body = get(b"/blob"); break
    except OSError:
        if time.time() > deadline: raise
        time.sleep(0.3)
open(out, "w").write("%d %s\n" % (len(body), hashlib.sha256(body).hexdigest()))
get(b"/done")
' "$want" "$WORK/tcp-peer.out" fgqb$$ >>"$WORK/tcp-peer.log" 2>&1 &
    TCP_PID=$!
    TCP_ARGS=(--af-packet "$TCP_HOST")
    TCP_APPEND=fg.tcp=1
}
# tcp_peer_check PROBLEMS-VAR SERVER-LOG: what the sink received must be the
# guest's bytes, and the server must have cut TSO chains into more frames
# (egress) than it fetched (tx).
tcp_peer_check() {
    local -n _q=$1
    if [[ -n $TCP_SKIP ]]; then
        echo "skipped: ixgbevf TSO over TCP (part of \"ixgbevf bring-up + traffic\"): $TCP_SKIP"
        return 0
    fi
    wait "$TCP_PID" 2>/dev/null
    local got want tx eg
    got=$(cat "$WORK/tcp-peer.out" 2>/dev/null)
    want="$(seq 1 40000 | wc -c) $(seq 1 40000 | sha256sum | cut -d' ' -f1)"
    [[ $got == "$want" ]] || _q+="HTTP client in the namespace got '${got:-nothing}', expected '$want' (log $WORK/tcp-peer.log)"$'\n'
    tx=$(counter "$2" "tx"); eg=$(counter "$2" "egress")
    if [[ -n $tx && -n $eg ]] && (( eg <= tx )); then
        _q+="model server ($(basename "$2")): egress $eg <= tx $tx: no TSO chain was cut into segments"$'\n'
    fi
}
tcp_peer_stop() {
    [[ -n ${TCP_PID:-} ]] && { kill "$TCP_PID" 2>/dev/null; wait "$TCP_PID" 2>/dev/null; TCP_PID=; }
    ip link del "$TCP_HOST" 2>/dev/null
    ip netns del "$TCP_NS" 2>/dev/null
    return 0
}

# --- wire peers: a veth pair in a network namespace ----------------------------
# As root, a network namespace holding a veth pair and nothing else (IPv6 off, no
# addresses: the kernel sends nothing on it by itself). The model server runs in
# the namespace with --af-packet on one end; once the guest prints its marker line
# (`FG-DAEMON-UP mac=...`, `FG-CSUM-READY mac=...`) on the console, a sender script
# sends a counted mix on the other end, so exactly those frames enter the model's
# wire side, and only after the guest is ready. Without root (or ip, or python3)
# the test (or that part of it) is skipped.

# veth_ns NS WIRE PEER LOG: sets up namespace NS with veth WIRE <-> PEER, both up.
# Prints nothing on success; otherwise prints why (for a skip line), leaving nothing behind.
veth_ns() {
    local ns=$1 wire=$2 peer=$3 log=$4
    if [[ $(id -u) != 0 ]]; then echo "needs root for a network namespace with a veth pair"; return 0; fi
    if ! command -v ip >/dev/null || ! command -v python3 >/dev/null; then
        echo "needs ip (iproute2) and python3"; return 0
    fi
    if ! { ip netns add "$ns" \
        && ip netns exec "$ns" sh -c 'for f in /proc/sys/net/ipv6/conf/default/disable_ipv6 \
            /proc/sys/net/ipv6/conf/all/disable_ipv6; do [ -e $f ] && echo 1 > $f; done; true' \
        && ip -n "$ns" link add "$wire" type veth peer name "$peer" \
        && ip -n "$ns" link set "$wire" up && ip -n "$ns" link set "$peer" up; } 2>"$log"; then
        echo "could not set up a network namespace with a veth pair ($(tail -n 1 "$log"))"
        ip netns del "$ns" 2>/dev/null
    fi
    return 0
}
# send_when_ready NS PEER CONSOLE MARKER OUT SCRIPT ARGS...: in the background, wait
# (up to the guest timeout) for `MARKER mac=...` in console log CONSOLE, then run
# `python3 SCRIPT PEER MAC ARGS...` in NS, output in OUT. Sets SEND_PID.
send_when_ready() {
    local ns=$1 peer=$2 console=$3 marker=$4 out=$5 script=$6
    shift 6
    (
        end=$((SECONDS + TIMEOUT)); mac=
        while (( SECONDS < end )); do
            mac=$(grep -a -oP "^$marker mac=\K[0-9a-f:]{17}" "$console" 2>/dev/null | head -n 1)
            [[ -n $mac ]] && break
            sleep 0.2
        done
        [[ -n $mac ]] || { echo "no $marker line in $console"; exit 1; }
        echo "guest printed $marker: MAC $mac"
        exec ip netns exec "$ns" python3 "$HERE/$script" "$peer" "$mac" "$@"
    ) >"$out" 2>&1 &
    SEND_PID=$!
}
# send_stop PID NS: stops a sender (if still running) and removes its namespace.
send_stop() {
    [[ -n ${1:-} ]] && { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
    ip netns del "$2" 2>/dev/null
    return 0
}

# The daemon test's wire: send-frames.py sends FLOOD frames of FLEN bytes and
# LEGIT queries of LLEN bytes once the guest prints FG-DAEMON-UP.
WIRE_NS=fgd$$
WIRE_SKIP=
WIRE_PID=
wire_start() {
    WIRE_SKIP=$(veth_ns "$WIRE_NS" fgdw fgdp "$WORK/daemon-wire.log")
    return 0
}
# wire_send LOG FLOOD FLEN LEGIT LLEN
wire_send() {
    local log=$1; shift
    send_when_ready "$WIRE_NS" fgdp "$log" FG-DAEMON-UP "$WORK/daemon-send.log" send-frames.py "$@"
    WIRE_PID=$SEND_PID
}
wire_stop() {
    send_stop "${WIRE_PID:-}" "$WIRE_NS"
    WIRE_PID=
}

# The ixgbevf test's frames with bad checksums: the 82599 server runs in the
# namespace; once the guest prints FG-CSUM-READY, send-csum-frames.py sends
# CSUM_MIX (GOOD BAD_UDP BAD_IP ZERO). The guest checks that ixgbevf's
# rx_csum_offload_errors rises by exactly the bad ones (and, on an 82599, the
# UDP-checksum-0 ones: erratum 44).
CSUM_NS=fgc$$
CSUM_MIX=(200 40 30 20)
CSUM_SKIP=
CSUM_PID=
CSUM_PREFIX=()
CSUM_ARGS=()
CSUM_APPEND=
csum_start() {
    CSUM_PREFIX=(); CSUM_ARGS=(); CSUM_APPEND=
    CSUM_SKIP=$(veth_ns "$CSUM_NS" fgcw fgcp "$WORK/csum-wire.log")
    [[ -n $CSUM_SKIP ]] && return 0
    CSUM_PREFIX=(ip netns exec "$CSUM_NS")
    CSUM_ARGS=(--af-packet fgcw)
    CSUM_APPEND="fg.csum=$(IFS=:; echo "${CSUM_MIX[*]}")"
}
# csum_send LOG
csum_send() {
    send_when_ready "$CSUM_NS" fgcp "$1" FG-CSUM-READY "$WORK/csum-send.log" send-csum-frames.py \
        "${CSUM_MIX[@]}"
    CSUM_PID=$SEND_PID
}
csum_stop() {
    send_stop "${CSUM_PID:-}" "$CSUM_NS"
    CSUM_PID=
}

SIM=
if [[ -n $BUILD_ERR ]]; then :; else SIM=$(find_sim) || SIM=; fi
NO_SERVER="needs the vfio-user model server (floodgate-sim serve), not found"

# --- tests ---------------------------------------------------------------------
if wanted smoke; then
    run_scenario "guest boots with vfio + intel-iommu" smoke --edu
    verdict "guest boots with vfio + intel-iommu" ""
fi

# Test 1: Linux's ixgbevf against the model. Two VFs in one guest, each
# served by its own model: an 82599 VF (the main run: pings, the generator's
# UDP, VLAN, rings, down/up, re-probe; the server answers ARP/ICMP echo for
# 10.0.0.1) and an X540 VF (jumbo frames, which the 82599 refuses with a PF
# at MTU 1500; answers for 10.0.1.1). See scenarios/ixgbevf.sh.
if wanted ixgbevf; then
    label="ixgbevf bring-up + traffic"
    a=$WORK/ixgbevf-82599.sock
    b=$WORK/ixgbevf-x540.sock
    if [[ -n $BUILD_ERR ]]; then
        echo "FAIL $label ($BUILD_ERR)"; FAILED=$((FAILED + 1))
    elif [[ -z $SIM ]]; then
        skip "$label" "$NO_SERVER"
    elif csum_start && SERVER_PREFIX=("${CSUM_PREFIX[@]}") \
        && start_server "$a" --respond 10.0.0.1 --generator udp:200:64 --pcap-out "$a.pcap" "${CSUM_ARGS[@]}" \
        && SERVER_PREFIX=() && tcp_peer_start \
        && start_server "$b" --model x540 --respond 10.0.1.1 --pcap-out "$b.pcap" "${TCP_ARGS[@]}"; then
        rm -f "$WORK/ixgbevf.log"
        if [[ -n $CSUM_SKIP ]]; then
            echo "skipped: ixgbevf RX checksum errors (part of \"$label\"): $CSUM_SKIP"
        else
            csum_send "$WORK/ixgbevf.log"
        fi
        run_scenario "$label" ixgbevf --vfio-user "$a" --vfio-user "$b" --append "${TCP_APPEND:-} ${CSUM_APPEND:-}"
        finish_servers
        p=
        if [[ -z $CSUM_SKIP ]]; then
            csum_total=$((CSUM_MIX[0] + CSUM_MIX[1] + CSUM_MIX[2] + CSUM_MIX[3]))
            if kill -0 "$CSUM_PID" 2>/dev/null; then
                p+="the checksum frames were never sent (the guest did not print FG-CSUM-READY)"$'\n'
            elif ! wait "$CSUM_PID" || ! grep -q "^sent $csum_total\$" "$WORK/csum-send.log"; then
                p+="send-csum-frames.py failed: $(tail -n 3 "$WORK/csum-send.log" | tr '\n' ' ')"$'\n'
            fi
            CSUM_PID=
        fi
        csum_stop
        tcp_peer_check p "$b.log"
        tcp_peer_stop
        log=$WORK/ixgbevf.log
        need_counter p "$a.log" "echo" -ge "$(replies "$log" 10.0.0.1)" "every ping reply the guest saw was sent by the responder"
        need_counter p "$b.log" "echo" -ge "$(replies "$log" 10.0.1.1)" "every ping reply the guest saw was sent by the responder"
        need_counter p "$a.log" "dma faults" -eq 0 "ixgbevf only uses addresses it mapped"
        need_counter p "$b.log" "dma faults" -eq 0 "ixgbevf only uses addresses it mapped (jumbo buffers span IOMMU pages)"
        need_counter p "$a.log" "irqs signalled" -ge 1 "ixgbevf runs on MSI-X"
        # Every checksum of what ixgbevf sent, as it left the model on the wire: ixgbevf
        # offloads the TCP/UDP checksum to the device (the guest sends a DNS query and a
        # SYN for this), so a wrong one is the model's fault.
        command -v python3 >/dev/null || p+="python3 is missing: it checks the wire capture's checksums (scripts/qemu/check-csum.py)"$'\n'
        for cap in "$a.pcap" "$b.pcap"; do
            out=$(python3 "$HERE/check-csum.py" "$cap" --src-net 10.0.) || p+="wire capture $(basename "$cap"): $out"$'\n'
        done
        if ! grep -q 'udp [1-9]' <<<"$(python3 "$HERE/check-csum.py" "$a.pcap" --src-net 10.0.)" \
            || ! grep -q 'tcp [1-9]' <<<"$(python3 "$HERE/check-csum.py" "$a.pcap" --src-net 10.0.)"; then
            p+="wire capture $(basename "$a.pcap"): no UDP or no TCP frame from the guest to check"$'\n'
        fi
        verdict "$label" "$p"
    else
        SERVER_PREFIX=()
        csum_stop
        echo "FAIL $label (a server did not start)"; FAILED=$((FAILED + 1))
    fi
fi

# Test 2: our PMD through the guest's vfio-pci and emulated IOMMU, on the
# model's generated traffic, once on an 82599 VF and once on an X540 VF (one
# server each); the DMA fault is checked in each server's record.
if wanted pmd; then
    label="pmd via vfio-pci"
    a=$WORK/pmd-82599.sock
    b=$WORK/pmd-x540.sock
    if [[ -n $BUILD_ERR ]]; then
        echo "FAIL $label ($BUILD_ERR)"; FAILED=$((FAILED + 1))
    elif [[ -z $SIM ]]; then
        skip "$label" "$NO_SERVER"
    elif start_server "$a" --generator udp:1000:64 \
        && start_server "$b" --model x540 --generator udp:1000:64; then
        # ixgbevf stays out so that the VFs are free for vfio-pci.
        run_scenario "$label" pmd --vfio-user "$a" --vfio-user "$b" --append "fg.skipmod=ixgbevf fg.arg=300"
        finish_servers
        p=
        mapfile -t iovas < <(grep -a -oP '^FG-FAULT-IOVA \K0x[0-9a-f]+' "$WORK/pmd.log")
        mapfile -t fwds < <(grep -a -oP '^FG-RESULT pmd-forward PASS forwarded \K[0-9]+' "$WORK/pmd.log")
        k=0
        for srv in "$a" "$b"; do
            iova=${iovas[$k]:-}
            if [[ -z $iova ]]; then
                p+="$(basename "$srv"): the guest printed no FG-FAULT-IOVA line for it (fault check did not run)"$'\n'
            elif ! grep -aq "unmapped iova $iova" "$srv.log"; then
                p+="model server ($(basename "$srv")): no DMA fault recorded at the unmapped IOVA $iova"$'\n'
            fi
            # Exactly one fault: the one descriptor the guest pointed at an unmapped IOVA.
            need_counter p "$srv.log" "dma faults" -eq 1 "the guest posted one descriptor with an unmapped buffer, and nothing else may fault"
            need_counter p "$srv.log" "irqs signalled" -ge 1 "the PMD slept on the RX vector"
            need_counter p "$srv.log" "egress" -ge "${fwds[$k]:-1}" "frames the PMD forwarded must leave on the wire"
            k=$((k + 1))
        done
        verdict "$label" "$p"
    else
        echo "FAIL $label (a server did not start)"; FAILED=$((FAILED + 1))
    fi
fi

# Test 3: the daemon, `floodgate run --config`, in the guest on the model's
# 82599 VF through vfio-pci: FLOOD frames from unknown sources and LEGIT
# queries from the four known clients, all to UDP 53, sent once it is up. The
# guest checks the daemon's numbers (scenarios/daemon.sh); here, that exactly
# the mix entered the model and reached the VF's ring.
if wanted daemon; then
    label="floodgate run via vfio-pci"
    a=$WORK/daemon.sock
    mix=(1000 64 100 90) # FLOOD FLOOD_LEN LEGIT LEGIT_LEN
    total=$((mix[0] + mix[2]))
    if [[ -n $BUILD_ERR ]]; then
        echo "FAIL $label ($BUILD_ERR)"; FAILED=$((FAILED + 1))
    elif [[ -z $SIM ]]; then
        skip "$label" "$NO_SERVER"
    elif wire_start && [[ -n $WIRE_SKIP ]]; then
        skip "$label" "$WIRE_SKIP"
    elif SERVER_PREFIX=(ip netns exec "$WIRE_NS") && start_server "$a" --af-packet fgdw; then
        SERVER_PREFIX=()
        rm -f "$WORK/daemon.log"
        wire_send "$WORK/daemon.log" "${mix[@]}"
        # ixgbevf stays out so that the VF is free for vfio-pci.
        run_scenario "$label" daemon --vfio-user "$a" --append "fg.skipmod=ixgbevf fg.arg=$(IFS=:; echo "${mix[*]}")"
        finish_servers
        p=
        if kill -0 "$WIRE_PID" 2>/dev/null; then
            p+="the frames were never sent (the guest did not say the daemon was up)"$'\n'
        elif ! wait "$WIRE_PID" || ! grep -q "^sent $total\$" "$WORK/daemon-send.log"; then
            p+="send-frames.py failed: $(tail -n 3 "$WORK/daemon-send.log" | tr '\n' ' ')"$'\n'
        fi
        WIRE_PID=
        wire_stop
        need_counter p "$a.log" "wire in" -eq "$total" "exactly the frames sent on the veth entered the model"
        need_counter p "$a.log" "rx delivered" -eq "$total" "all of them were written into the VF's RX ring"
        need_counter p "$a.log" "no-desc" -eq 0 "the ring holds the whole mix"
        need_counter p "$a.log" "dma faults" -eq 0 "the daemon only uses addresses it mapped"
        verdict "$label" "$p"
    else
        SERVER_PREFIX=()
        wire_stop
        echo "FAIL $label (the server did not start)"; FAILED=$((FAILED + 1))
    fi
fi

echo "guest-test: $PASSED passed, $FAILED failed, $SKIPPED skipped ($SECONDS s in all)"
[[ $FAILED == 0 ]]
