#!/usr/bin/env bash
# Prepare one SR-IOV VF of an ixgbe PF for floodgate:
#   1. create VFs through sriov_numvfs (enough for the requested index);
#   2. set the VF's MAC, trust and spoofchk with `ip link set <pf> vf N ...`;
#   3. enable n-tuple filters on the PF (`ethtool -K <pf> ntuple on`), for steering;
#   4. reserve 2 MiB huge pages for DMA memory;
#   5. bind the VF to vfio-pci through driver_override;
#   6. print the VF's PCI address on stdout (everything else goes to stderr), so that
#      FLOODGATE_PCI_VF=$(scripts/setup-vf.sh enp3s0f0 0) works.
#
# Usage: setup-vf.sh [options] <pf-netdev> <vf-index>
#   --mac MAC          VF MAC (default: 02 followed by bytes 2-5 of the PF MAC and the VF index)
#   --trust on|off     VF trust, needed for promiscuous/multicast modes (default on)
#   --spoofchk on|off  source-MAC anti-spoofing (default off: forwarded packets keep their MAC)
#   --num-vfs N        VFs to create (default: the current count, or index+1 if fewer)
#   --hugepages N      2 MiB pages to have reserved at least (default 512 = 1 GiB; 0 skips)
#   --no-ntuple        leave the PF's n-tuple setting alone
#   --dry-run          print each step, change nothing
#   --sysfs DIR        sysfs root (default /sys; tests use a fake tree)
#   --procfs DIR       procfs root (default /proc)
#   --timeout SEC      how long to wait for the VF to appear / bind (default 5)
# Environment: FLOODGATE_SYSFS and FLOODGATE_PROCFS set the roots too.
set -euo pipefail

SYS=${FLOODGATE_SYSFS:-/sys}
PROC=${FLOODGATE_PROCFS:-/proc}
MAC=
TRUST=on
SPOOFCHK=off
NUMVFS=
HUGEPAGES=512
NTUPLE=1
DRY=0
TIMEOUT=5
ARGS=()

die() { printf 'setup-vf: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'setup-vf: %s\n' "$*" >&2; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --mac) MAC=${2:?--mac needs a value}; shift 2 ;;
        --trust) TRUST=${2:?}; shift 2 ;;
        --spoofchk) SPOOFCHK=${2:?}; shift 2 ;;
        --num-vfs) NUMVFS=${2:?}; shift 2 ;;
        --hugepages) HUGEPAGES=${2:?}; shift 2 ;;
        --no-ntuple) NTUPLE=0; shift ;;
        --dry-run) DRY=1; shift ;;
        --sysfs) SYS=${2:?}; shift 2 ;;
        --procfs) PROC=${2:?}; shift 2 ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ ${#ARGS[@]} -eq 2 ]] || { say "expected <pf-netdev> <vf-index>"; usage 2; }
PF=${ARGS[0]}
IDX=${ARGS[1]}
[[ $IDX =~ ^[0-9]+$ ]] || die "VF index '$IDX' is not a number"
for v in TRUST SPOOFCHK; do
    [[ ${!v} == on || ${!v} == off ]] || die "--${v,,} takes on or off, not '${!v}'"
done
[[ $HUGEPAGES =~ ^[0-9]+$ ]] || die "--hugepages takes a number, not '$HUGEPAGES'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout takes whole seconds, not '$TIMEOUT'"
if [[ -n $MAC && ! $MAC =~ ^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$ ]]; then
    die "--mac '$MAC' is not a MAC address like 02:00:00:00:00:01"
fi

# run CMD...: run a command, or print it under --dry-run.
run() {
    printf '+ %s\n' "$*" >&2
    [[ $DRY == 1 ]] || "$@"
}
# put VALUE FILE: write a sysfs/procfs file, or print the write under --dry-run.
put() {
    printf '+ echo %s > %s\n' "$1" "$2" >&2
    [[ $DRY == 1 ]] && return 0
    printf '%s\n' "$1" >"$2" || die "writing '$1' to $2 failed"
}
# wait_until SECONDS TEST...: poll every 0.1 s; always tries at least once.
wait_until() {
    local tries=$(($1 * 10))
    while true; do
        "${@:2}" && return 0
        ((tries-- > 0)) || return 1
        sleep 0.1
    done
}
link_name() { local t; t=$(readlink "$1" 2>/dev/null) && basename "$t"; }

PFDEV=$SYS/class/net/$PF/device
[[ -e $SYS/class/net/$PF ]] || die "no network interface $PF (see \`ip link\`)"
[[ -r $PFDEV/sriov_totalvfs ]] || die "$PF does not support SR-IOV ($PFDEV/sriov_totalvfs is missing)"
TOTAL=$(<"$PFDEV/sriov_totalvfs")
CUR=$(<"$PFDEV/sriov_numvfs")
((IDX < TOTAL)) || die "$PF supports $TOTAL VFs, so VF index $IDX does not exist"

# 1. VFs.
WANT=${NUMVFS:-$((CUR > IDX ? CUR : IDX + 1))}
[[ $WANT =~ ^[0-9]+$ ]] && ((WANT > IDX && WANT <= TOTAL)) ||
    die "--num-vfs $WANT must be more than the VF index $IDX and at most $TOTAL"
if ((CUR != WANT)); then
    if ((CUR != 0)); then
        say "re-creating VFs: $CUR -> $WANT (the kernel only changes the count through 0; existing VFs go away)"
        put 0 "$PFDEV/sriov_numvfs"
    fi
    put "$WANT" "$PFDEV/sriov_numvfs"
else
    say "$PF already has $CUR VFs"
fi
VF=
if wait_until "$TIMEOUT" test -L "$PFDEV/virtfn$IDX"; then
    VF=$(link_name "$PFDEV/virtfn$IDX")
elif [[ $DRY == 1 ]]; then
    VF="<address of VF $IDX>"
else
    die "VF $IDX of $PF did not appear ($PFDEV/virtfn$IDX missing after ${TIMEOUT}s): see dmesg"
fi
say "VF $IDX of $PF is $VF"

# 2. MAC, trust, spoofchk (the PF driver holds these for the VF).
if [[ -z $MAC ]]; then
    PFMAC=$(<"$SYS/class/net/$PF/address")
    IFS=: read -r _ _ b2 b3 b4 b5 <<<"$PFMAC"
    MAC=$(printf '02:%s:%s:%s:%s:%02x' "$b2" "$b3" "$b4" "$b5" "$IDX")
fi
run ip link set "$PF" vf "$IDX" mac "$MAC"
run ip link set "$PF" vf "$IDX" trust "$TRUST"
run ip link set "$PF" vf "$IDX" spoofchk "$SPOOFCHK"

# 3. n-tuple filters (perfect-match flow director), for steering flows into the VF.
if [[ $NTUPLE == 1 ]]; then
    run ethtool -K "$PF" ntuple on
fi

# 4. Huge pages: only ever raise the reservation.
if ((HUGEPAGES > 0)); then
    NR=$PROC/sys/vm/nr_hugepages
    have=$(<"$NR")
    if ((have < HUGEPAGES)); then
        put "$HUGEPAGES" "$NR"
        if [[ $DRY == 0 ]]; then
            got=$(<"$NR")
            ((got >= HUGEPAGES)) ||
                say "warning: only $got of $HUGEPAGES huge pages could be reserved (memory is fragmented; reserve at boot with hugepages=$HUGEPAGES)"
        fi
    else
        say "$have huge pages already reserved"
    fi
fi

# 5. vfio-pci.
VFDEV=$SYS/bus/pci/devices/$VF
[[ -d $SYS/bus/pci/drivers/vfio-pci ]] || run modprobe vfio-pci
drv=$(link_name "$VFDEV/driver" || true)
if [[ $drv == vfio-pci ]]; then
    say "$VF is already bound to vfio-pci"
else
    [[ -n $drv ]] && put "$VF" "$VFDEV/driver/unbind"
    put vfio-pci "$VFDEV/driver_override"
    put "$VF" "$SYS/bus/pci/drivers_probe"
    if [[ $DRY == 0 ]]; then
        bound() { [[ $(link_name "$VFDEV/driver" || true) == vfio-pci ]]; }
        wait_until "$TIMEOUT" bound ||
            die "$VF is bound to '$(link_name "$VFDEV/driver" || echo nothing)', not vfio-pci, after drivers_probe: check \`dmesg\` (no IOMMU? boot with intel_iommu=on iommu=pt)"
    fi
fi
if [[ $DRY == 0 ]]; then
    grp=$(link_name "$VFDEV/iommu_group") ||
        die "$VF has no IOMMU group: boot with intel_iommu=on iommu=pt"
    say "$VF: IOMMU group $grp (/dev/vfio/$grp); run floodgate as root or chown that node"
fi

# 6. The address, alone on stdout.
printf '%s\n' "$VF"
