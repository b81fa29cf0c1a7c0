#!/usr/bin/env bash
# Undo scripts/setup-vf.sh for one VF: unbind it from vfio-pci, clear its driver_override and
# let the kernel's own driver (ixgbevf) probe it again; optionally remove all VFs of the PF.
# The huge page reservation and the PF's n-tuple setting are left as they are (other users may
# rely on them); the VF's MAC/trust/spoofchk go away with the VFs.
#
# Usage: teardown-vf.sh [options] <pf-netdev> <vf-index>
#   --remove-vfs   also set sriov_numvfs to 0 (destroys every VF of the PF)
#   --no-reprobe   leave the VF unbound instead of handing it back to the kernel
#   --dry-run      print each step, change nothing
#   --sysfs DIR    sysfs root (default /sys, or $FLOODGATE_SYSFS)
set -euo pipefail

SYS=${FLOODGATE_SYSFS:-/sys}
REMOVE=0
REPROBE=1
DRY=0
ARGS=()

die() { printf 'teardown-vf: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'teardown-vf: %s\n' "$*" >&2; }
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --remove-vfs) REMOVE=1; shift ;;
        --no-reprobe) REPROBE=0; shift ;;
        --dry-run) DRY=1; shift ;;
        --sysfs) SYS=${2:?}; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
[[ ${#ARGS[@]} -eq 2 ]] || { say "expected <pf-netdev> <vf-index>"; usage 2; }
PF=${ARGS[0]}
IDX=${ARGS[1]}
[[ $IDX =~ ^[0-9]+$ ]] || die "VF index '$IDX' is not a number"

put() {
    printf '+ echo %s > %s\n' "$1" "$2" >&2
    [[ $DRY == 1 ]] && return 0
    printf '%s\n' "$1" >"$2" || die "writing '$1' to $2 failed"
}
link_name() { local t; t=$(readlink "$1" 2>/dev/null) && basename "$t"; }

PFDEV=$SYS/class/net/$PF/device
[[ -e $SYS/class/net/$PF ]] || die "no network interface $PF (see \`ip link\`)"
if [[ -L $PFDEV/virtfn$IDX ]]; then
    VF=$(link_name "$PFDEV/virtfn$IDX")
    VFDEV=$SYS/bus/pci/devices/$VF
    drv=$(link_name "$VFDEV/driver" || true)
    if [[ $drv == vfio-pci ]]; then
        put "$VF" "$VFDEV/driver/unbind"
    elif [[ -n $drv ]]; then
        say "$VF is bound to $drv, not vfio-pci; leaving the binding alone"
    fi
    # An empty write clears the override.
    put "" "$VFDEV/driver_override"
    if [[ $REPROBE == 1 && $drv == vfio-pci ]]; then
        put "$VF" "$SYS/bus/pci/drivers_probe"
    fi
    say "VF $IDX of $PF ($VF) released"
else
    say "VF $IDX of $PF does not exist; nothing to unbind"
fi
if [[ $REMOVE == 1 ]]; then
    put 0 "$PFDEV/sriov_numvfs"
    say "all VFs of $PF removed"
fi
