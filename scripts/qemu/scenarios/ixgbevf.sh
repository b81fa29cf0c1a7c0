# fg.test=ixgbevf: Linux's own ixgbevf drives the model's VF, served over
# vfio-user by `floodgate-sim serve --respond 10.0.0.1 --generator udp:...`
# (run-guest.sh --vfio-user SOCKET).
# fg.arg=PEER (default 10.0.0.1): the IPv4 address the model's wire side
# answers (ARP and ICMP echo); the guest takes 10.0.0.2/24, the address the
# server's UDP generator sends to.
#
# A second VF, an X540 answered at 10.0.1.1 (a second server), is optional:
# if present it runs jumbo frames.
#
# Steps on the first VF: probe and mailbox bring-up, link up, pings of two
# sizes, an MTU change to 9000 (refused on an 82599 whose PF runs MTU 1500,
# as Linux does), VLAN/multicast/promiscuous requests, ring resizing,
# the generator's frames counted by the stack, RX checksum errors counted by
# ixgbevf (with fg.csum=..., frames the host sends), a down/up cycle (ixgbevf
# resets the VF and negotiates again), unload and re-probe, and at the end a
# look at everything ixgbevf logged: any complaint is a FAIL and a finding
# for docs/model-fidelity.md. The host checks the server's counters.
PEER=${FG_ARG:-10.0.0.1}

bdf=$(find_pci 8086 10ed || find_pci 8086 1515 || find_pci 8086 1565) || bdf=
if [ -z "$bdf" ]; then
    result ixgbevf-probe FAIL "no 82599/X540/X550 VF on the PCI bus: $($LSPCI -nn | tr '\n' ';')"
    return 0
fi

# netdev_of BDF: wait for the device's netdev (ixgbevf bound), print its name.
netdev_of() {
    wait_for 10 test -e "/sys/bus/pci/devices/$1/net" || true
    ls "/sys/bus/pci/devices/$1/net" 2>/dev/null | head -n1
}
# ping_peer NAME COUNT SIZE [PEER]: COUNT echo requests of SIZE bytes; PASS
# if all are answered. Prints "FG-INFO ping-replies N PEER" for the host's
# cross-check against the server's responder counter.
ping_peer() {
    _peer=${4:-$PEER}
    ping -c "$2" -s "$3" -W 3 "$_peer" >/tmp/ping.out 2>&1
    _got=$(grep -oE '[0-9]+ packets received' /tmp/ping.out | grep -oE '^[0-9]+')
    echo "FG-INFO ping-replies ${_got:-0} $_peer"
    if [ "${_got:-0}" = "$2" ]; then
        result "$1" PASS "$2 x $3-byte echo to $_peer answered: $(grep -E 'round-trip' /tmp/ping.out)"
    else
        result "$1" FAIL "$3-byte ping $_peer: ${_got:-0}/$2 answered: $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"
    fi
}
# carrier_up IFC NAME: wait up to 15 s for carrier.
carrier_up() {
    if wait_for 15 file_is "/sys/class/net/$1/carrier" 1; then
        result "$2" PASS "$1 carrier up, $($ETHTOOL "$1" | grep -E 'Speed' | tr -d '\t')"
    else
        result "$2" FAIL "$1 no carrier; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
        return 1
    fi
}

ifc=$(netdev_of "$bdf")
drv=$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver" 2>/dev/null)" 2>/dev/null)
if [ "$drv" = ixgbevf ] && [ -n "$ifc" ]; then
    result ixgbevf-probe PASS "$bdf bound to ixgbevf as $ifc, MAC $(cat /sys/class/net/$ifc/address)"
else
    result ixgbevf-probe FAIL "$bdf driver=${drv:-none} netdev=${ifc:-none}; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
    return 0
fi

# The mailbox bring-up at probe: RESET (with the MAC), API_NEGOTIATE, GET_QUEUES.
if dmesg | grep -qE 'PF still in reset state|Unable to start|random MAC|Invalid MAC'; then
    result ixgbevf-mailbox FAIL "$(dmesg | grep -E 'ixgbevf' | grep -E 'reset state|random MAC|Invalid|Unable' | tr '\n' ';')"
else
    result ixgbevf-mailbox PASS "MAC from the PF, no reset/mailbox complaints at probe"
fi

$IP addr add 10.0.0.2/24 dev "$ifc"
$IP link set "$ifc" up
carrier_up "$ifc" ixgbevf-link || return 0
read up_at _idle < /proc/uptime

# Real traffic through the model: ARP, then ICMP echo answered on the wire side.
ping_peer ixgbevf-ping 5 56
ping_peer ixgbevf-ping-1400 3 1400

# Checksum offload: UDP (a DNS query) and TCP (a SYN) from the guest's stack
# leave as CHECKSUM_PARTIAL, so ixgbevf asks the device to fill in the L4
# checksum (context descriptor TUCMD/L4T, POPTS.TXSM; facts §6.2, §6.3). The
# host checks every checksum in the server's --pcap-out capture.
nslookup -timeout=1 offload-check.invalid "$PEER" >/dev/null 2>&1 &
nc -w 1 "$PEER" 80 </dev/null >/dev/null 2>&1 &
sleep 2
echo "FG-INFO sent UDP (DNS) and TCP (SYN) to $PEER for the checksum check"

# The server's generator sends UDP to 10.0.0.2 from the wire; the stack counts it.
read rx0 < "/sys/class/net/$ifc/statistics/rx_packets"
sleep 1
read rx1 < "/sys/class/net/$ifc/statistics/rx_packets"
if [ $((rx1 - rx0)) -ge 20 ]; then
    result ixgbevf-rx PASS "$((rx1 - rx0)) frames received in 1 s (the model's UDP generator)"
else
    result ixgbevf-rx FAIL "only $((rx1 - rx0)) frames received in 1 s from the model's UDP generator"
fi

# RX checksum offload (facts §6.1; docs/model-fidelity.md finding 3). With
# fg.csum=GOOD:BAD_UDP:BAD_IP:ZERO on the command line the host, once it sees
# the FG-CSUM-READY line, sends on the model's wire GOOD UDP frames with
# correct checksums, BAD_UDP with a wrong UDP checksum, BAD_IP with a wrong
# IPv4 header checksum and ZERO with UDP checksum 0 (scripts/qemu/
# send-csum-frames.py). ixgbevf counts every frame the device flags (IPE with
# IPCS, TCPE with L4CS) in rx_csum_offload_errors, so that counter must rise
# by exactly BAD_UDP + BAD_IP; on an 82599 also by ZERO, because the device
# flags UDP checksum 0 too (82599 erratum 44) and upstream ixgbevf, unlike
# ixgbe, does not work around it. The good frames and the generator's must
# not raise it. The kernel checks every checksum again in software: its Ip
# InHdrErrors must rise by BAD_IP, Udp InCsumErrors by BAD_UDP, and Udp
# NoPorts (nothing listens on port 9) by at least GOOD + ZERO.
csum_spec=$(grep -oE 'fg\.csum=[0-9]+:[0-9]+:[0-9]+:[0-9]+' /proc/cmdline | cut -d= -f2)
if [ -n "$csum_spec" ]; then
    IFS=: read -r c_good c_udp c_ip c_zero <<EOF
$csum_spec
EOF
    csum_errs() { $ETHTOOL -S "$ifc" | grep -E '^ +rx_csum_offload_errors:' | grep -oE '[0-9]+$'; }
    c_want=$((c_udp + c_ip))
    c_dev=$(cat "/sys/bus/pci/devices/$bdf/device")
    [ "$c_dev" = 0x10ed ] && c_want=$((c_want + c_zero))
    # snmp: Ip InHdrErrors (field 5), Udp NoPorts (3) and InCsumErrors (8).
    snmp() { awk '/^Ip: [0-9]/ { h = $5 } /^Udp: [0-9]/ { n = $3; c = $8 } END { print h, n, c }' /proc/net/snmp; }
    c_before=$(csum_errs)
    read -r s_hdr0 s_noport0 s_csum0 <<EOF
$(snmp)
EOF
    echo "FG-CSUM-READY mac=$(cat "/sys/class/net/$ifc/address")"
    csum_reached() { [ $(($(csum_errs) - c_before)) -ge "$c_want" ]; }
    wait_for 20 csum_reached
    # Anything still in flight (the good frames come first) has landed after 1 s.
    sleep 1
    c_after=$(csum_errs)
    read -r s_hdr1 s_noport1 s_csum1 <<EOF
$(snmp)
EOF
    c_got=$((c_after - c_before))
    s_hdr=$((s_hdr1 - s_hdr0)); s_csum=$((s_csum1 - s_csum0)); s_noport=$((s_noport1 - s_noport0))
    c_what="$c_good good, $c_udp bad UDP, $c_ip bad IPv4 header, $c_zero UDP checksum 0 sent to $c_dev"
    c_kernel="kernel: Ip InHdrErrors +$s_hdr, Udp InCsumErrors +$s_csum, NoPorts +$s_noport"
    if [ -n "$c_before" ] && [ "$c_got" = "$c_want" ] && [ "$s_hdr" = "$c_ip" ] \
        && [ "$s_csum" = "$c_udp" ] && [ "$s_noport" -ge $((c_good + c_zero)) ]; then
        result ixgbevf-rx-csum-errors PASS "rx_csum_offload_errors rose by exactly $c_got ($c_what; $c_kernel)"
    elif [ "$c_got" = "$c_want" ]; then
        result ixgbevf-rx-csum-errors FAIL "rx_csum_offload_errors rose by $c_got as expected, but the kernel's own checks disagree ($c_what; $c_kernel)"
    else
        result ixgbevf-rx-csum-errors FAIL "rx_csum_offload_errors rose by $c_got ('$c_before' -> '$c_after'), expected $c_want ($c_what; $c_kernel)"
    fi
fi

# Jumbo frames on the 82599: the MTU change makes ixgbevf send SET_LPE. A
# Linux PF running MTU 1500 (the server's default) refuses a VF frame over
# 1518 bytes on an 82599, so ixgbevf must refuse the MTU with EINVAL (facts
# §3.8 step 11, §7); the PF also clears the VF's receive enable until the
# next VF reset, which the down/up below does. Jumbo traffic runs on the
# X540 VF at the end.
if $IP link set "$ifc" mtu 9000 2>/tmp/mtu.out; then
    result ixgbevf-jumbo-refused FAIL "MTU 9000 accepted on an 82599 VF whose PF runs MTU 1500"
    $IP link set "$ifc" mtu 1500
elif grep -q 'Invalid argument' /tmp/mtu.out; then
    result ixgbevf-jumbo-refused PASS "MTU 9000 refused (SET_LPE NACKed: 82599 PF at MTU 1500)"
    ping -c 1 -W 1 "$PEER" >/tmp/ping.out 2>&1
    echo "FG-INFO after the refused SET_LPE (VFRE cleared until the next reset): ping $(grep -oE '[0-9]+ packets received' /tmp/ping.out)"
else
    result ixgbevf-jumbo-refused FAIL "ip link set mtu 9000: $(cat /tmp/mtu.out)"
fi

# Mailbox requests beyond bring-up: SET_VLAN (a VLAN device), SET_MULTICAST
# (a multicast address), UPDATE_XCAST_MODE (promiscuous: an untrusted VF is
# downgraded to MULTI by the PF, silently), then ring resizing (ixgbevf
# rebuilds its rings), and traffic must still flow.
if $IP link add link "$ifc" name vlan5 type vlan id 5 2>/tmp/vlan.out && $IP link set vlan5 up 2>>/tmp/vlan.out; then
    result ixgbevf-vlan PASS "VLAN 5 added (SET_VLAN accepted)"
    $IP link del vlan5
else
    result ixgbevf-vlan FAIL "VLAN 5: $(cat /tmp/vlan.out | tr '\n' ' ')"
fi
$IP maddr add 01:00:5e:01:02:03 dev "$ifc"
$IP link set "$ifc" promisc on
$IP link set "$ifc" promisc off
if $ETHTOOL -G "$ifc" rx 1024 tx 1024 2>/tmp/ring.out; then
    carrier_up "$ifc" ixgbevf-ring-1024-link && ping_peer ixgbevf-ring-1024-ping 2 56
    $ETHTOOL -G "$ifc" rx 512 tx 512
else
    result ixgbevf-ring-1024 FAIL "ethtool -G rx 1024 tx 1024: $(cat /tmp/ring.out)"
fi

# Down/up: ixgbevf closes, resets the VF and negotiates again at open.
$IP link set "$ifc" down
$IP link set "$ifc" up
carrier_up "$ifc" ixgbevf-reopen-link && ping_peer ixgbevf-reopen-ping 2 56

# Let the watchdog run (it checks for a TX hang about every 2 s) for at
# least 6 s after link-up.
read now _idle < /proc/uptime
left=$((${up_at%%.*} + 7 - ${now%%.*}))
[ "$left" -gt 0 ] && sleep "$left"

# Hardware counters (VFGPRC/VFGPTC, as ethtool shows them) against the stack's.
$ETHTOOL -S "$ifc" >/tmp/ethtool.out 2>&1
hw_rx=$(grep -E '^ +rx_packets:' /tmp/ethtool.out | grep -oE '[0-9]+$')
hw_tx=$(grep -E '^ +tx_packets:' /tmp/ethtool.out | grep -oE '[0-9]+$')
read sw_rx < "/sys/class/net/$ifc/statistics/rx_packets"
read sw_tx < "/sys/class/net/$ifc/statistics/tx_packets"
if [ -n "$hw_rx" ] && [ -n "$hw_tx" ] && [ "$hw_rx" -gt 0 ] && [ "$hw_tx" -gt 0 ]; then
    result ixgbevf-counters PASS "ethtool rx_packets $hw_rx tx_packets $hw_tx; stack rx $sw_rx tx $sw_tx"
else
    result ixgbevf-counters FAIL "ethtool rx_packets '${hw_rx}' tx_packets '${hw_tx}'; stack rx $sw_rx tx $sw_tx"
fi
grep -vE ': 0$' /tmp/ethtool.out | sed 's/^/FG-INFO ethtool: /'

# Unload and probe again: the VF must come back from the state ixgbevf left.
$IP link set "$ifc" down
rmmod ixgbevf
insmod /lib/modules/ixgbevf.ko
ifc=$(netdev_of "$bdf")
if [ -n "$ifc" ]; then
    $IP addr add 10.0.0.2/24 dev "$ifc"
    $IP link set "$ifc" up
    carrier_up "$ifc" ixgbevf-reprobe-link && ping_peer ixgbevf-reprobe-ping 2 56
else
    result ixgbevf-reprobe FAIL "no netdev after rmmod + insmod; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
fi

# A second VF, an X540 (8086:1515) served by its own model which answers for
# 10.0.1.1: MTU 9000 (allowed on the X540) and 8000-byte echoes. ixgbevf maps
# the 8042-byte frame as one TX buffer that spans IOMMU pages, and the reply
# spans several RX buffers.
x540=$(find_pci 8086 1515) || x540=
if [ -n "$x540" ] && [ "$x540" != "$bdf" ]; then
    ifc2=$(netdev_of "$x540")
    if [ -z "$ifc2" ]; then
        result ixgbevf-x540-probe FAIL "$x540: no netdev; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
    else
        result ixgbevf-x540-probe PASS "$x540 bound to ixgbevf as $ifc2"
        $IP addr add 10.0.1.2/24 dev "$ifc2"
        if $IP link set "$ifc2" mtu 9000 2>/tmp/mtu.out; then
            $IP link set "$ifc2" up
            carrier_up "$ifc2" ixgbevf-x540-mtu9000-link \
                && ping_peer ixgbevf-x540-ping-jumbo 3 8000 10.0.1.1
            # fg.tcp=1: the host put an HTTP client at 10.0.1.3 on the X540 server's
            # wire (a veth in a network namespace). busybox httpd sends /blob with
            # sendfile: TCP with TSO (facts §6.2 TSE) over several buffers per frame.
            # The client fetches /done when it has the whole body; the host checks it.
            if grep -q 'fg.tcp=1' /proc/cmdline; then
                mkdir -p /www
                seq 1 40000 >/www/blob
                echo "FG-INFO tso: $($ETHTOOL -k "$ifc2" | grep -E '^tcp-segmentation-offload')"
                httpd -f -vv -p 8080 -h /www 2>/tmp/httpd.log &
                hpid=$!
                if wait_for 40 grep -q 'url:/done' /tmp/httpd.log; then
                    result ixgbevf-x540-tcp PASS "$(wc -c </www/blob) bytes served over TCP (TSO) to 10.0.1.3 (the host checks what arrived)"
                else
                    result ixgbevf-x540-tcp FAIL "the HTTP client at 10.0.1.3 did not finish within 40 s: $(tail -n 3 /tmp/httpd.log | tr '\n' ' ')"
                fi
                kill "$hpid" 2>/dev/null
            fi
        else
            result ixgbevf-x540-mtu9000 FAIL "ip link set mtu 9000 on the X540 VF: $(cat /tmp/mtu.out)"
        fi
    fi
fi

# Everything ixgbevf (and the network core's TX watchdog) said. The usual
# informational lines are fine; anything else is a disagreement with the model.
dmesg | grep -E 'ixgbevf|NETDEV WATCHDOG|eth[0-9]' | grep -v 'ommand line:' | grep -vE \
    'Intel\(R\) 10 Gigabit|Copyright|(entered|left) promiscuous mode|8021q: adding VLAN|ixgbevf [0-9a-f:.]+: ([0-9a-f]{2}:){5}[0-9a-f]{2}$|MAC: [0-9]|Intel\(R\) (82599|X540|X550)|NIC Link is Up|link becomes ready|renamed from' \
    >/tmp/complaints
if [ -s /tmp/complaints ]; then
    result ixgbevf-dmesg FAIL "$(wc -l < /tmp/complaints) unexpected kernel lines: $(head -n 8 /tmp/complaints | tr '\n' ';')"
else
    result ixgbevf-dmesg PASS "no complaints from ixgbevf (no Tx Unit Hang, resets, mailbox errors)"
fi
dmesg | grep -iE 'ixgbevf|hang|NETDEV' | grep -v 'ommand line:' | sed 's/^/FG-INFO dmesg: /'
