#!/bin/sh
# /init of the floodgate test guest (busybox sh). Installed by mkinitramfs.sh.
#
# Kernel command line:
#   fg.test=NAME     run /scenarios/NAME.sh (sourced, so it can use the helpers below)
#   fg.arg=VALUE     free-form argument for the scenario (available as $FG_ARG)
#   fg.skipmod=A,B   do not insmod these modules (e.g. ixgbevf, so that a VF
#                    stays unbound for vfio-pci)
#   fg.shell=1       drop to a shell instead of powering off (interactive debugging)
#
# Output protocol, one line each, on the serial console:
#   FG-RESULT <name> PASS|FAIL <detail>
#   FG-DONE test=<name> failures=<n>
# The host (guest-test.sh) decides from these lines only.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu

mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

# Real tools; busybox has applets of the same names, so always use these paths.
IP=/sbin/ip
ETHTOOL=/sbin/ethtool
LSPCI=/usr/bin/lspci
SETPCI=/usr/bin/setpci

FG_FAILURES=0
result() { # result NAME PASS|FAIL DETAIL...
    _n=$1; _s=$2; shift 2
    echo "FG-RESULT $_n $_s $*"
    [ "$_s" = PASS ] || FG_FAILURES=$((FG_FAILURES + 1))
}
check() { # check NAME DETAIL -- command...: PASS if the command succeeds
    _n=$1; _d=$2; shift 3
    if "$@" >/tmp/check.out 2>&1; then result "$_n" PASS "$_d"
    else result "$_n" FAIL "$_d: $(tail -n 3 /tmp/check.out | tr '\n' ' ')"; fi
}
# wait_for SECONDS command...: poll until the command succeeds, by wall time
# (/proc/uptime, read without forking: forks are slow under TCG).
wait_for() {
    read _up _idle < /proc/uptime
    _end=$((${_up%%.*} + $1)); shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        read _up _idle < /proc/uptime
        [ "${_up%%.*}" -ge "$_end" ] && return 1
        usleep 20000
    done
}
# file_is FILE VALUE: the file's first line equals VALUE (no fork).
file_is() {
    [ -r "$1" ] || return 1
    read _v < "$1" 2>/dev/null || return 1
    [ "$_v" = "$2" ]
}
# bind_vfio BDF: hand a PCI function to vfio-pci; prints the group number.
bind_vfio() {
    _dev=/sys/bus/pci/devices/$1
    [ -e "$_dev" ] || return 1
    if [ -e "$_dev/driver" ]; then echo "$1" > "$_dev/driver/unbind" || return 1; fi
    echo vfio-pci > "$_dev/driver_override" || return 1
    echo "$1" > /sys/bus/pci/drivers_probe
    _grp=$(basename "$(readlink "$_dev/iommu_group")")
    wait_for 5 test -c "/dev/vfio/$_grp" || return 1
    echo "$_grp"
}
# find_pci VENDOR DEVICE: print the BDF of the first matching function.
find_pci() {
    for _d in /sys/bus/pci/devices/*; do
        if [ "$(cat "$_d/vendor")" = "0x$1" ] && [ "$(cat "$_d/device")" = "0x$2" ]; then
            basename "$_d"; return 0
        fi
    done
    return 1
}

FG_TEST=
FG_ARG=
FG_SHELL=
FG_SKIPMOD=
for w in $(cat /proc/cmdline); do
    case $w in
        fg.test=*) FG_TEST=${w#fg.test=} ;;
        fg.arg=*) FG_ARG=${w#fg.arg=} ;;
        fg.shell=*) FG_SHELL=${w#fg.shell=} ;;
        fg.skipmod=*) FG_SKIPMOD=,${w#fg.skipmod=}, ;;
    esac
done

echo "FG-BOOT kernel=$(uname -r) test=${FG_TEST:-none}"
mod_fail=
for m in $(cat /lib/modules/order); do
    _b=${m%.ko}
    case $FG_SKIPMOD in *",$_b,"*) echo "FG-INFO skipping module $_b"; continue ;; esac
    if ! insmod "/lib/modules/$m"; then mod_fail="$mod_fail $m"; fi
done
if [ -n "$mod_fail" ]; then result modules FAIL "insmod failed:$mod_fail"
else result modules PASS "loaded from /lib/modules/order${FG_SKIPMOD:+ except $FG_SKIPMOD}"; fi

if [ -z "$FG_TEST" ]; then
    result init FAIL "no fg.test=NAME on the kernel command line"
elif [ ! -r "/scenarios/$FG_TEST.sh" ]; then
    result init FAIL "no scenario /scenarios/$FG_TEST.sh"
else
    . "/scenarios/$FG_TEST.sh"
fi

echo "FG-DONE test=${FG_TEST:-none} failures=$FG_FAILURES"
if [ "$FG_SHELL" = 1 ]; then
    echo "fg.shell=1: starting a shell; 'poweroff -f' to leave"
    setsid cttyhack sh
fi
sync
poweroff -f
