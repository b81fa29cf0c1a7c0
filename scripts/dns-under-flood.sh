#!/usr/bin/env bash
# A real DNS server under a real flood, in network namespaces on veth pairs: legitimate
# transactions answered against flood rate (the XDP paper's DDoS benchmark, with DNS).
#
#   scripts/dns-under-flood.sh [--quick] [--filter xdp-count] [--seconds S]
#                              [--legit-rate QPS] [--flood-rate PPS] [--keep]
#
# Topology: a bridge in namespace fgd-wire joins three namespaces:
#   fgd-srv  srv0 10.53.0.1  dnsmasq, authoritative-style answers for *.test.example
#   fgd-cli  cli0 10.53.0.2  the legitimate client: numbered queries at a fixed rate
#   fgd-fld  fld0 10.53.0.3  the flood: spoofed queries to port 53 from 198.18.0.0/15 and DNS
#                            responses (reflection) to port 53, AF_PACKET sendmmsg
# The server's default route points at the flood namespace, which drops what it gets: the
# answers to spoofed sources go somewhere, as on the Internet.
#
# Phases, one `key=value` line each:
#   no-flood             the client alone
#   flood-no-floodgate   client + flood, nothing in front of the server
#   flood-floodgate      client + flood, `floodgate run` with [device] backend = "af_xdp" on
#                        srv0: the generated program steers UDP to the server's port 53 into
#                        the daemon's AF_XDP socket, the rules pass the client's address and
#                        drop the rest, survivors go to dnsmasq through a TAP
#   flood-xdp-standin    (with --filter xdp-count) client + flood, with the STAND-IN filter
#                        xdp/examples/xdp_filter.rs instead of the daemon: the generated XDP
#                        program steers UDP/53 into an AF_XDP socket, frames not from the
#                        client's address are dropped, the rest go to the server through a TAP
#
# --quick: 3 s per phase, flood at 20 kpps, and asserts that every legitimate query is answered
# in the no-flood phase and in the filtered phases that run (exit 1 otherwise). Without it:
# 10 s per phase, the flood as fast as this machine sends.
# Needs root, ip, python3 and dnsmasq; otherwise prints one "skipped: <why>" line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0 filter="" seconds="" legit_rate=200 flood_rate="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --filter) filter="${2:?--filter needs a value}"; shift ;;
        --seconds) seconds="${2:?}"; shift ;;
        --legit-rate) legit_rate="${2:?}"; shift ;;
        --flood-rate) flood_rate="${2:?}"; shift ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "dns-under-flood: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
case "$filter" in ""|xdp-count) ;; *) echo "dns-under-flood: --filter takes xdp-count" >&2; exit 2 ;; esac
if [ "$quick" = 1 ]; then
    seconds=${seconds:-3}; flood_rate=${flood_rate:-20000}
else
    seconds=${seconds:-10}
fi

if [ "$(id -u)" != 0 ]; then echo "skipped: dns-under-flood needs root (network namespaces, XDP)"; exit 0; fi
for tool in ip python3; do
    command -v "$tool" >/dev/null || { echo "skipped: dns-under-flood needs $tool"; exit 0; }
done
DNSMASQ=$(command -v dnsmasq || true)
[ -n "$DNSMASQ" ] || [ ! -x /usr/sbin/dnsmasq ] || DNSMASQ=/usr/sbin/dnsmasq
[ -n "$DNSMASQ" ] || { echo "skipped: dns-under-flood needs dnsmasq (apt-get install dnsmasq-base)"; exit 0; }
if ! ip netns add fgd-probe 2>/dev/null; then echo "skipped: dns-under-flood: cannot create network namespaces"; exit 0; fi
ip netns del fgd-probe

TARGET=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET" ] || TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet -p floodgate-xdp --example flood --example xdp_filter
cargo build --release --quiet --bin floodgate
FLOOD="$TARGET/release/examples/flood"
XDPF="$TARGET/release/examples/xdp_filter"
FLOODGATE="$TARGET/release/floodgate"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dns-under-flood.XXXXXX")

NS_W=fgd-wire NS_S=fgd-srv NS_C=fgd-cli NS_F=fgd-fld
SRV_IP=10.53.0.1 CLI_IP=10.53.0.2 FLD_IP=10.53.0.3
SRV_MAC=02:00:00:53:00:01 CLI_MAC=02:00:00:53:00:02 FLD_MAC=02:00:00:53:00:03
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in $NS_S $NS_C $NS_F $NS_W; do ip netns del "$ns" 2>/dev/null || true; done
    [ "$keep" = 1 ] && echo "work files kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# --- topology --------------------------------------------------------------------------------
for ns in $NS_W $NS_S $NS_C $NS_F; do
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    in_ns "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
done
in_ns $NS_W ip link add br0 type bridge
in_ns $NS_W ip link set br0 up
for spec in "$NS_S srv0 wsrv $SRV_IP $SRV_MAC" "$NS_C cli0 wcli $CLI_IP $CLI_MAC" \
            "$NS_F fld0 wfld $FLD_IP $FLD_MAC"; do
    set -- $spec
    ip link add "$2" address "$5" netns "$1" type veth peer name "$3" netns $NS_W
    in_ns $NS_W ip link set "$3" master br0 up
    in_ns "$1" ip addr add "$4/24" dev "$2"
    in_ns "$1" ip link set "$2" up
done
# Static neighbours: no ARP to lose under the flood.
in_ns $NS_S ip neigh replace $CLI_IP lladdr $CLI_MAC dev srv0 nud permanent
in_ns $NS_S ip neigh replace $FLD_IP lladdr $FLD_MAC dev srv0 nud permanent
in_ns $NS_C ip neigh replace $SRV_IP lladdr $SRV_MAC dev cli0 nud permanent
in_ns $NS_S ip route add default via $FLD_IP

# --- the DNS server ----------------------------------------------------------------------------
# dnsmasq answers every A query under test.example with 192.0.2.53 from its own data (no
# upstream: --no-resolv), bound to the server's address only.
ip netns exec $NS_S "$DNSMASQ" --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --bind-interfaces --listen-address=$SRV_IP --except-interface=lo --port=53 \
    --address=/test.example/192.0.2.53 --pid-file="$WORK/dnsmasq.pid" --user=root \
    --log-facility="$WORK/dnsmasq.log" &
pids+=($!)

# --- the legitimate client ----------------------------------------------------------------------
cat > "$WORK/client.py" <<'PY'
# Numbered queries q<N>.test.example (ID = N mod 65536) at a fixed rate; an answer counts when
# its ID and question name match a query sent and it has at least one answer record.
import os, select, socket, struct, sys, time
server, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.connect((server, 53))
def query(n):
    name = b"".join(bytes([len(l)]) + l for l in (b"q%d" % n, b"test", b"example")) + b"\0"
    return struct.pack(">HHHHHH", n & 0xffff, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1", name
pending, answered, sent = {}, 0, 0
start = time.monotonic()
total = int(rate * seconds)
def drain(timeout):
    global answered
    r, _, _ = select.select([s], [], [], timeout)
    while r:
        try:
            m = s.recv(4096)
        except (BlockingIOError, ConnectionRefusedError):
            break
        if len(m) >= 12:
            qid, flags, qd, an = struct.unpack(">HHHH", m[:8])
            name = pending.get(qid)
            if name is not None and m[12:12 + len(name)] == name and flags & 0x8000 and an >= 1:
                del pending[qid]
                answered += 1
        r, _, _ = select.select([s], [], [], 0)
while sent < total:
    due = start + sent / rate
    now = time.monotonic()
    if now < due:
        drain(due - now)
        continue
    q, name = query(sent)
    pending[sent & 0xffff] = name
    try:
        s.send(q)
    except OSError:
        pass
    sent += 1
end = time.monotonic() + 2.0
while pending and time.monotonic() < end:
    drain(0.05)
print("legit_sent=%d legit_answered=%d" % (sent, answered))
PY

# Waits until the server answers (dnsmasq started, routes up).
wait_server() {
    for _ in $(seq 50); do
        if in_ns $NS_C python3 "$WORK/client.py" $SRV_IP 10 0.1 2>/dev/null | grep -q 'legit_answered=1'; then
            return 0
        fi
        sleep 0.2
    done
    echo "dns-under-flood: the DNS server does not answer; its log:" >&2
    cat "$WORK/dnsmasq.log" >&2 || true
    exit 1
}
wait_server

failures=0
# run_phase NAME FLOOD(0|1) [FILTER-PID FILTER-OUTPUT]: the filter, if given, is stopped with
# SIGTERM after the client finished, and its totals line gives dropped and passed.
run_phase() {
    local name=$1 with_flood=$2 fpid=${3:-} fout=${4:-} flood_pid="" flood_out="$WORK/flood-$1.out"
    if [ "$with_flood" = 1 ]; then
        local rate_arg=()
        [ -n "$flood_rate" ] && rate_arg=(--rate "$flood_rate")
        ip netns exec $NS_F "$FLOOD" --ifname fld0 --dst-ip $SRV_IP --dst-mac $SRV_MAC --kind mixed \
            --seconds $((seconds + 2)) \
            "${rate_arg[@]}" > "$flood_out" &
        flood_pid=$!
        sleep 1
    fi
    local legit
    legit=$(in_ns $NS_C python3 "$WORK/client.py" $SRV_IP "$legit_rate" "$seconds")
    local flood_pps=0
    if [ -n "$flood_pid" ]; then
        wait "$flood_pid" || true
        flood_pps=$(sed -n 's/.* pps=\([0-9]*\).*/\1/p' "$flood_out")
    fi
    local sent answered pct dropped=- passed=-
    sent=$(sed -n 's/.*legit_sent=\([0-9]*\).*/\1/p' <<<"$legit")
    answered=$(sed -n 's/.*legit_answered=\([0-9]*\).*/\1/p' <<<"$legit")
    pct=$(python3 -c "print('%.1f' % (100.0 * $answered / max($sent, 1)))")
    if [ -n "$fpid" ]; then
        kill -TERM "$fpid" 2>/dev/null || true
        wait "$fpid" || true
        if grep -q '^floodgate: rx' "$fout"; then
            # The daemon's final line: "floodgate: rx N | dropped N | passed N (tap N, ...".
            dropped=$(sed -n 's/^floodgate: rx .* | dropped \([0-9]*\) |.*/\1/p' "$fout")
            passed=$(sed -n 's/^floodgate: rx .* | passed \([0-9]*\) (.*/\1/p' "$fout")
        else
            dropped=$(sed -n 's/^xdp_filter steered=.* dropped=\([0-9]*\).*/\1/p' "$fout")
            passed=$(sed -n 's/^xdp_filter steered=.* passed=\([0-9]*\).*/\1/p' "$fout")
        fi
    fi
    echo "phase=$name flood_pps=${flood_pps:-0} legit_sent=$sent legit_answered=$answered answered_pct=$pct dropped=${dropped:--} passed=${passed:--}"
    LAST_SENT=$sent LAST_ANSWERED=$answered
}

assert_all_answered() {
    if [ "$quick" = 1 ] && [ "$LAST_SENT" != "$LAST_ANSWERED" ]; then
        echo "FAIL: phase $1: $LAST_ANSWERED of $LAST_SENT legitimate queries answered" >&2
        failures=$((failures + 1))
    fi
}

echo "dns-under-flood: ${seconds} s per phase, legitimate ${legit_rate} qps, flood ${flood_rate:-as fast as possible} pps, server dnsmasq $("$DNSMASQ" --version | head -1 | awk '{print $3}')"

run_phase no-flood 0
assert_all_answered no-flood
run_phase flood-no-floodgate 1

# --- phase 3: the daemon on its AF_XDP backend ------------------------------------------------
cat > "$WORK/floodgate.toml" <<EOF
[device]
backend = "af_xdp"
ifname = "srv0"
queues = 1
# Deep fill and RX rings: the flood must not empty them while the polling thread is off the CPU.
rx_ring = 4096
pool_size = 16384

[[steering]]
name = "dns"
flow = "udp4"
dst = "$SRV_IP/32"
dst_port = 53

[filter]
default = "drop"

[[filter.rule]]
name = "known-clients"
action = "pass"
src = ["$CLI_IP/32"]

[tap]
name = "fgd-tap0"

[stats]
EOF
"$FLOODGATE" check-config "$WORK/floodgate.toml" > "$WORK/check.out" 2>&1 || {
    echo "dns-under-flood: floodgate check-config refuses the generated config:" >&2
    cat "$WORK/check.out" >&2
    exit 1
}
RUST_LOG=${RUST_LOG:-info} ip netns exec $NS_S "$FLOODGATE" run --config "$WORK/floodgate.toml" \
    > "$WORK/floodgate.out" 2> "$WORK/floodgate.log" &
fg_pid=$!
pids+=($fg_pid)
# Ready when the filter loop runs (the steering program is attached and the TAP is up).
for _ in $(seq 100); do
    grep -q 'reinjecting into TAP' "$WORK/floodgate.log" 2>/dev/null && break
    kill -0 "$fg_pid" 2>/dev/null || break
    sleep 0.1
done
if ! kill -0 "$fg_pid" 2>/dev/null; then
    echo "dns-under-flood: floodgate run ended at start; its log:" >&2
    cat "$WORK/floodgate.log" "$WORK/floodgate.out" >&2
    exit 1
fi
sleep 0.5
run_phase flood-floodgate 1 "$fg_pid" "$WORK/floodgate.out"
assert_all_answered flood-floodgate
grep -h 'AF_XDP backend:\|XDP steering attached' "$WORK/floodgate.log" | sed 's/^\[[^]]*\] */  floodgate: /' || true
if in_ns $NS_S ip link show dev srv0 | grep -q 'prog/xdp'; then
    echo "FAIL: srv0 still has an XDP program after floodgate stopped" >&2
    failures=$((failures + 1))
fi

# --- stand-in: the floodgate-xdp example filter -----------------------------------------------
if [ "$filter" = xdp-count ]; then
    ip netns exec $NS_S "$XDPF" --ifname srv0 --allow $CLI_IP --tap fgd-tap0 > "$WORK/xdpf.out" 2>&1 &
    xdpf_pid=$!
    pids+=($xdpf_pid)
    for _ in $(seq 100); do
        grep -q 'xdp_filter ready' "$WORK/xdpf.out" && break
        kill -0 "$xdpf_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q 'xdp_filter ready' "$WORK/xdpf.out"; then
        echo "dns-under-flood: the stand-in filter did not start:" >&2
        cat "$WORK/xdpf.out" >&2
        exit 1
    fi
    echo "stand-in filter: $(grep 'xdp_filter ready' "$WORK/xdpf.out" | cut -d' ' -f3-)"
    run_phase flood-xdp-standin 1 "$xdpf_pid" "$WORK/xdpf.out"
    echo "stand-in filter totals: $(sed -n 's/^xdp_filter \(steered=.*\)/\1/p' "$WORK/xdpf.out")"
    assert_all_answered flood-xdp-standin
    if in_ns $NS_S ip link show dev srv0 | grep -q 'prog/xdp'; then
        echo "FAIL: the XDP program is still attached to srv0 after the stand-in filter stopped" >&2
        failures=$((failures + 1))
    fi
fi

[ "$failures" = 0 ] || exit 1
