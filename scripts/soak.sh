#!/usr/bin/env bash
# Soak test: `floodgate run` over vfio-user against the NIC model (`floodgate-sim serve`) at a
# steady flood for N minutes, with a reload every second alternating a valid and an invalid
# config. Every 10 s it samples the daemon's RSS, open file descriptors and free pool buffers
# (from the metrics endpoint); at the end it stops the daemon with SIGTERM (under the flood)
# and prints one summary line:
#
#   soak: minutes=10 deaths=0 rss_start=… rss_end=… fds_start=… fds_end=… reloads_ok=… reloads_rejected=… invariant=holds
#
# RSS is in kB; the start values are the first sample (10 s in). Exits non-zero if the daemon
# died, did not print its final line, or the invariant failed, or if RSS grew by more than
# 1 MB or the number of open descriptors changed between the first and the last sample.
#
#   ./scripts/soak.sh [MINUTES]      default 10; SOAK_PPS sets the flood rate (default 20000)
#
# Needs root (the daemon's TAP); otherwise prints one "skipped: ..." line and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${1:-10}"
pps="${SOAK_PPS:-20000}"
case "$minutes" in '' | *[!0-9]*) echo "usage: $0 [MINUTES]" >&2; exit 2 ;; esac

if [ "$(id -u)" != 0 ] || [ ! -e /dev/net/tun ]; then
    echo "skipped: soak: needs root and /dev/net/tun for the daemon's TAP"
    exit 0
fi

cargo build --release --quiet -p floodgate -p floodgate-sim --bins
target="${CARGO_TARGET_DIR:-target}/release"
fg="$target/floodgate"
sim="$target/floodgate-sim"

dir="$(mktemp -d /tmp/fg-soak.XXXXXX)"
sock="$dir/vf0.sock"
tap="fgsoak$(( $$ % 10000 ))"
sim_pid=""
fg_pid=""
cleanup() {
    [ -n "$fg_pid" ] && kill -9 "$fg_pid" 2>/dev/null || true
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

# The demo's rules on a vfio-user device; the invalid variant has an unknown action.
filter="$(sed -n '/^\[filter\]/,/^\[tap\]/p' examples/demo.toml | sed '$d')"
cat > "$dir/good.toml" <<EOF
[device]
pci = "vfio-user:$sock"
rx_ring = 4096
pool_size = 16384

$filter

[tap]
name = "$tap"

[stats]
interval_ms = 1000
prometheus = "127.0.0.1:0"
EOF
sed 's/action = "drop"/action = "explode"/' "$dir/good.toml" > "$dir/bad.toml"
cp "$dir/good.toml" "$dir/run.toml"

"$sim" serve --socket "$sock" --generator "flood:$pps" > "$dir/sim.out" 2> "$dir/sim.err" &
sim_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "soak: floodgate-sim did not start:"; cat "$dir/sim.err"; exit 1; }

RUST_LOG=info "$fg" run --config "$dir/run.toml" > "$dir/fg.out" 2> "$dir/fg.err" &
fg_pid=$!
for _ in $(seq 300); do
    grep -q "metrics on http://" "$dir/fg.err" 2>/dev/null && break
    kill -0 "$fg_pid" 2>/dev/null || break
    sleep 0.1
done
addr="$(sed -n 's|.*metrics on http://\([^/]*\)/metrics.*|\1|p' "$dir/fg.err" | head -1)"
[ -n "$addr" ] || { echo "soak: the daemon did not come up:"; cat "$dir/fg.err"; exit 1; }

alive() { kill -0 "$fg_pid" 2>/dev/null; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$fg_pid/status"; }
fds() { find "/proc/$fg_pid/fd" -mindepth 1 -maxdepth 1 | wc -l; }
pool() {
    curl -s --max-time 5 "http://$addr/metrics" \
        | awk '$1 == "floodgate_pool_free_buffers" {print $2}'
}

deaths=0
rss_start="" fds_start=""
rss_end="" fds_end=""
total=$(( minutes * 60 ))
for sec in $(seq 1 "$total"); do
    if [ $(( sec % 2 )) = 1 ]; then src=good; else src=bad; fi
    cp "$dir/$src.toml" "$dir/next.toml" && mv "$dir/next.toml" "$dir/run.toml"
    alive && kill -HUP "$fg_pid"
    sleep 1
    if ! alive; then deaths=1; echo "soak: the daemon died after $sec s"; break; fi
    if [ $(( sec % 10 )) = 0 ]; then
        r="$(rss)"; f="$(fds)"; p="$(pool)"
        [ -z "$rss_start" ] && rss_start="$r" && fds_start="$f"
        rss_end="$r"; fds_end="$f"
        echo "soak: t=${sec}s rss=${r}kB fds=$f pool_free=${p:-?}"
    fi
done

status=0
if alive; then
    # Stop under the flood; the guard only prevents a hang.
    kill -TERM "$fg_pid"
    for _ in $(seq 300); do alive || break; sleep 0.1; done
    if alive; then echo "soak: the daemon did not exit within 30 s of SIGTERM"; deaths=1; fi
    wait "$fg_pid" || status=$?
else
    wait "$fg_pid" || status=$?
fi
fg_pid=""
[ "$status" = 0 ] || deaths=1
line="$(grep '^floodgate: rx ' "$dir/fg.out" || true)"
ok="$(sed -n 's/.*| reloads \([0-9]*\) (\([0-9]*\) rejected).*/\1/p' <<< "$line")"
rejected="$(sed -n 's/.*| reloads \([0-9]*\) (\([0-9]*\) rejected).*/\2/p' <<< "$line")"
invariant=failed
grep -q 'invariant holds' <<< "$line" && invariant=holds
[ -n "$line" ] && echo "$line"
# The model's side: frames it could not place in the VF's ring (printed when the client left).
for _ in $(seq 50); do grep -q "client left" "$dir/sim.err" && break; sleep 0.1; done
model="$(sed -n 's/.*wire in \([0-9]*\) rx delivered \([0-9]*\) no-desc \([0-9]*\).*/wire_in=\1 rx_delivered=\2 no_desc=\3/p' "$dir/sim.err" | tail -1)"
echo "soak: model ${model:-counters not printed}"
if [ "$deaths" != 0 ] || [ -z "$line" ]; then
    echo "soak: daemon log (last 20 lines):"; tail -20 "$dir/fg.err"
fi
echo "soak: minutes=$minutes deaths=$deaths rss_start=${rss_start:-?} rss_end=${rss_end:-?}" \
     "fds_start=${fds_start:-?} fds_end=${fds_end:-?} reloads_ok=${ok:-?}" \
     "reloads_rejected=${rejected:-?} invariant=$invariant"
flat=1
if [ -n "$rss_start" ] && [ $(( rss_end - rss_start )) -gt 1024 ]; then
    echo "soak: RSS grew by $(( rss_end - rss_start )) kB (more than 1 MB)"; flat=0
fi
if [ -n "$fds_start" ] && [ "$fds_end" != "$fds_start" ]; then
    echo "soak: open descriptors went from $fds_start to $fds_end"; flat=0
fi
[ "$deaths" = 0 ] && [ "$invariant" = holds ] && [ "$flat" = 1 ]
