# fg.test=daemon: the real daemon, `floodgate run --config FILE`, on the model's 82599 VF
# through the guest kernel's vfio-pci and the emulated intel-iommu.
# Needs /bin/floodgate (the root package's binary, built static by guest-test.sh) and tun.ko.
#
# fg.arg=FLOOD:FLOOD_LEN:LEGIT:LEGIT_LEN: the mix the host sends once the daemon is up.
#
# Protocol with the host (guest-test.sh):
#   1. the guest binds the VF to vfio-pci, starts the daemon in the background and, once its
#      Prometheus endpoint answers, prints `FG-DAEMON-UP mac=<the VF's MAC>`;
#   2. the host sees that line on the console and sends exactly FLOOD + LEGIT frames to that MAC
#      into the model's wire side (scripts/qemu/send-frames.py);
#   3. the guest waits until the daemon has received them all (Prometheus), reads the TAP's
#      counters, sends SIGHUP (a reload, checked on the metrics endpoint), then SIGTERM, and
#      checks the exit status and the final summary line against the mix.
# Config: no `pf` and no [[steering]] (the model serves the VF alone, with no PF netdev in the
# guest), the demo's rules (pass the four known clients, drop the rest of UDP/53), TAP fgtap0,
# metrics on 127.0.0.1:9110, and a switch to user nobody after the device and TAP are open.
FGD_TAP=fgtap0
FGD_PROM=http://127.0.0.1:9110/metrics
if [ ! -x /bin/floodgate ]; then
    result daemon-run FAIL "/bin/floodgate missing from the initramfs"
    return 0
fi
IFS=: read FGD_FLOOD FGD_FLEN FGD_LEGIT FGD_LLEN <<EOF
${FG_ARG:-1000:64:100:80}
EOF
FGD_TOTAL=$((FGD_FLOOD + FGD_LEGIT))

# metric NAME: the value of a Prometheus sample (from /tmp/metrics, fetched by fetch_metrics).
# (No -T: busybox 1.35 wget with -T segfaults when the connection is refused.)
fetch_metrics() { wget -q -O /tmp/metrics.new "$FGD_PROM" 2>/dev/null && mv /tmp/metrics.new /tmp/metrics; }
metric() { sed -n "s/^$1 \([0-9]*\)\$/\1/p" /tmp/metrics; }
# summary KEY: the number after KEY in the daemon's final line.
summary() { grep '^floodgate: rx ' /tmp/fg.out | tail -n 1 | sed -n "s/.*$1 \([0-9]*\).*/\1/p"; }
# alive: the daemon runs (a zombie, state Z, has exited).
alive() {
    [ -r "/proc/$FGD_PID/stat" ] || return 1
    read _st < "/proc/$FGD_PID/stat"
    _st=${_st##*') '}
    [ "${_st%% *}" != Z ]
}
dead() { ! alive; }
daemon_log() { echo "FG-INFO daemon stderr (last lines):"; tail -n 15 /tmp/fg.err | sed 's/^/| /'; }

bdf=$(find_pci 8086 10ed) || { result daemon-probe FAIL "no 82599 VF (8086:10ed) on the PCI bus"; return 0; }
if ! grp=$(bind_vfio "$bdf"); then
    result daemon-bind FAIL "$bdf could not be bound to vfio-pci"
    return 0
fi
result daemon-bind PASS "$bdf (8086:10ed) bound to vfio-pci, /dev/vfio/$grp"
check daemon-tun "/dev/net/tun (tun.ko loaded)" -- test -c /dev/net/tun
$IP link set lo up

# The daemon drops to nobody once the VF and the TAP are open (the initramfs has no user database).
echo 'root:x:0:0:root:/:/bin/sh' > /etc/passwd
echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >> /etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > /etc/group
cat > /tmp/floodgate.toml <<EOF
# Written by scenarios/daemon.sh.
[device]
pci = "$bdf"
queues = 1
# The whole mix fits the ring: nothing can be lost even if the daemon falls behind under TCG.
rx_ring = 2048
tx_ring = 64
pool_size = 4096
burst = 32

[filter]
default = "pass"

[[filter.rule]]
name = "known-clients"
action = "pass"
proto = "udp"
dst_port = 53
src = ["192.0.2.10/32", "192.0.2.11/32", "198.51.100.7/32", "203.0.113.53/32"]

[[filter.rule]]
name = "dns-flood"
action = "drop"
proto = "udp"
dst_port = 53

[tap]
name = "$FGD_TAP"

[stats]
interval_ms = 200
prometheus = "127.0.0.1:9110"

[daemon]
user = "nobody"
EOF
check daemon-config "floodgate check-config accepts a PCI VF with no pf and no steering" -- \
    /bin/floodgate check-config /tmp/floodgate.toml

RUST_LOG=info /bin/floodgate run --config /tmp/floodgate.toml >/tmp/fg.out 2>/tmp/fg.err &
FGD_PID=$!
# Up = the metrics endpoint answers (it starts last, just before the filter loop).
up=
read _up _idle < /proc/uptime; _end=$((${_up%%.*} + 30))
while alive; do
    if fetch_metrics; then up=1; break; fi
    read _up _idle < /proc/uptime
    [ "${_up%%.*}" -ge "$_end" ] && break
    usleep 200000
done
mac=$(sed -n 's/.* up: MAC \([0-9a-f:]*\),.*/\1/p' /tmp/fg.err | head -n 1)
if [ -z "$up" ] || [ -z "$mac" ]; then
    result daemon-up FAIL "floodgate run did not come up (metrics endpoint ${up:+up}${up:-down}, MAC '${mac}')"
    daemon_log
    kill -KILL "$FGD_PID" 2>/dev/null
    return 0
fi
result daemon-up PASS "floodgate run up on $bdf, VF MAC $mac, TAP $FGD_TAP, metrics on 127.0.0.1:9110"
grep -q 'running as nobody' /tmp/fg.err && result daemon-privdrop PASS "the daemon switched to user nobody" \
    || result daemon-privdrop FAIL "no 'running as nobody' in the daemon's log"
echo "FG-DAEMON-UP mac=$mac"

# The host now sends the mix. Wait (40 s at most) until the daemon has taken all of it.
rx=0
read _up _idle < /proc/uptime; _end=$((${_up%%.*} + 40))
while alive; do
    fetch_metrics && rx=$(metric floodgate_rx_packets_total)
    [ "${rx:-0}" -ge "$FGD_TOTAL" ] && break
    read _up _idle < /proc/uptime
    [ "${_up%%.*}" -ge "$_end" ] && break
    usleep 300000
done
# Two more stats intervals, so that a frame arriving late (more than sent) would show.
usleep 500000
fetch_metrics
m_rx=$(metric floodgate_rx_packets_total); m_drop=$(metric floodgate_dropped_packets_total)
m_pass=$(metric floodgate_passed_packets_total); m_tap=$(metric floodgate_tap_packets_total)
m_err=$(metric floodgate_error_packets_total)
m_known=$(metric 'floodgate_rule_hits_total{rule="known-clients"}')
m_flood=$(metric 'floodgate_rule_hits_total{rule="dns-flood"}')
echo "FG-INFO metrics: rx $m_rx dropped $m_drop passed $m_pass tap $m_tap errors $m_err; hits known-clients $m_known dns-flood $m_flood"
# The TAP's counters in the guest kernel (it goes away with the daemon: read them now).
$IP -s link show "$FGD_TAP"
read t_rx < "/sys/class/net/$FGD_TAP/statistics/rx_packets"
read t_rxb < "/sys/class/net/$FGD_TAP/statistics/rx_bytes"

# SIGHUP: the daemon, now running as nobody, reads the config again and swaps the rules in.
kill -HUP "$FGD_PID"
reloaded() { fetch_metrics && [ "$(metric floodgate_config_reloads_total)" = 1 ]; }
if wait_for 10 reloaded; then result daemon-reload PASS "SIGHUP: rules reloaded (as nobody)"
else result daemon-reload FAIL "no reload counted 10 s after SIGHUP (reloads '$(metric floodgate_config_reloads_total)', rejected '$(metric floodgate_config_reload_errors_total)')"; fi

kill -TERM "$FGD_PID"
if ! wait_for 15 dead; then
    result daemon-sigterm FAIL "still running 15 s after SIGTERM"
    kill -KILL "$FGD_PID"
fi
wait "$FGD_PID"; rc=$?
[ $rc = 0 ] && result daemon-exit PASS "exit status 0 after SIGTERM" || { result daemon-exit FAIL "exit status $rc after SIGTERM"; daemon_log; }
line=$(grep '^floodgate: rx ' /tmp/fg.out | tail -n 1)
echo "FG-INFO summary: $line"

s_rx=$(summary 'rx'); s_drop=$(summary 'dropped'); s_pass=$(summary 'passed')
s_tap=$(summary '(tap'); s_ref=$(summary 'refused'); s_err=$(summary 'errors')
s_rel=$(summary 'reloads'); s_rej=$(echo "$line" | sed -n 's/.*(\([0-9]*\) rejected).*/\1/p')
want="rx $FGD_TOTAL dropped $FGD_FLOOD passed $FGD_LEGIT tap $FGD_LEGIT refused 0 errors 0 reloads 1 rejected 0"
got="rx $s_rx dropped $s_drop passed $s_pass tap $s_tap refused $s_ref errors $s_err reloads $s_rel rejected $s_rej"
if [ -n "$line" ] && [ "$got" = "$want" ] && echo "$line" | grep -q 'invariant holds'; then
    result daemon-summary PASS "$got, invariant holds"
else
    result daemon-summary FAIL "final line '${line:-none}': expected $want, invariant holds"
    daemon_log
fi
got="rx $m_rx dropped $m_drop passed $m_pass tap $m_tap errors $m_err known-clients $m_known dns-flood $m_flood"
want="rx $FGD_TOTAL dropped $FGD_FLOOD passed $FGD_LEGIT tap $FGD_LEGIT errors 0 known-clients $FGD_LEGIT dns-flood $FGD_FLOOD"
[ "$got" = "$want" ] && result daemon-prometheus PASS "$got" \
    || result daemon-prometheus FAIL "$got, expected $want"
want="rx_packets $FGD_LEGIT rx_bytes $((FGD_LEGIT * FGD_LLEN))"
got="rx_packets $t_rx rx_bytes $t_rxb"
[ "$got" = "$want" ] && result daemon-tap PASS "$FGD_TAP in the guest kernel: $got (the legitimate queries)" \
    || result daemon-tap FAIL "$FGD_TAP in the guest kernel: $got, expected $want"
grep -E 'WARN|ERROR' /tmp/fg.err | head -n 5 | sed 's/^/FG-INFO daemon: /'
# A clean shutdown closes the VFIO device only after BAR0 is unmapped; closing it earlier makes
# the kernel refuse to detach the group (VFIO_GROUP_UNSET_CONTAINER: EBUSY), logged as ERROR.
if grep -qE 'UNSET_CONTAINER|Could not unbind VFIO group' /tmp/fg.err; then
    result daemon-vfio-close FAIL "the VFIO group could not be detached at exit: $(grep -m1 -E 'UNSET_CONTAINER|unbind' /tmp/fg.err)"
else
    result daemon-vfio-close PASS "VFIO group detached from its container at exit (no EBUSY)"
fi
