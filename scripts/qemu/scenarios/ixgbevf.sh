# fg.test=ixgbevf: Linux's own ixgbevf drives the model's VF, served over
# vfio-user by `floodgate-sim serve` (run-guest.sh --vfio-user SOCKET).
# fg.arg=PEER (default 10.0.0.1): an IPv4 address the model's wire side
# answers; the guest takes 10.0.0.2/24.
# DRAFT: not yet run against a server (it does not exist yet); adapt the
# traffic step to whatever the model's wire side offers.
PEER=${FG_ARG:-10.0.0.1}

bdf=$(find_pci 8086 10ed || find_pci 8086 1515 || find_pci 8086 1565) || bdf=
if [ -z "$bdf" ]; then
    result ixgbevf-probe FAIL "no 82599/X540/X550 VF on the PCI bus: $($LSPCI -nn | tr '\n' ';')"
    return 0
fi
wait_for 10 test -e "/sys/bus/pci/devices/$bdf/net" || true
drv=$(basename "$(readlink "/sys/bus/pci/devices/$bdf/driver" 2>/dev/null)" 2>/dev/null)
ifc=$(ls "/sys/bus/pci/devices/$bdf/net" 2>/dev/null | head -n1)
if [ "$drv" = ixgbevf ] && [ -n "$ifc" ]; then
    result ixgbevf-probe PASS "$bdf bound to ixgbevf as $ifc"
else
    result ixgbevf-probe FAIL "$bdf driver=${drv:-none} netdev=${ifc:-none}; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
    return 0
fi

# The mailbox bring-up at probe: RESET (with the MAC), API_NEGOTIATE, GET_QUEUES.
if dmesg | grep -qE 'PF still in reset state|Unable to start'; then
    result ixgbevf-mailbox FAIL "$(dmesg | grep -E 'ixgbevf' | grep -E 'reset state|random MAC|Unable' | tr '\n' ';')"
else
    result ixgbevf-mailbox PASS "no reset/mailbox complaints at probe"
fi

$IP addr add 10.0.0.2/24 dev "$ifc"
$IP link set "$ifc" up
if wait_for 15 file_is "/sys/class/net/$ifc/carrier" 1; then
    result ixgbevf-link PASS "$ifc carrier up, $($ETHTOOL "$ifc" | grep -E 'Speed' | tr -d '\t')"
else
    result ixgbevf-link FAIL "$ifc no carrier; $(dmesg | grep -i ixgbevf | tail -n 3 | tr '\n' ';')"
    return 0
fi

if ping -c 3 -W 2 "$PEER" >/tmp/ping.out 2>&1; then
    result ixgbevf-traffic PASS "$(grep -E 'packets transmitted' /tmp/ping.out)"
else
    result ixgbevf-traffic FAIL "ping $PEER: $(tail -n 2 /tmp/ping.out | tr '\n' ' ')"
fi
$ETHTOOL -S "$ifc" 2>/dev/null | grep -E 'rx_packets|tx_packets|tx_timeout|restart'
dmesg | grep -iE 'ixgbevf|hang|reset' | tail -n 20
