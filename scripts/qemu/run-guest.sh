#!/usr/bin/env bash
# Boot the floodgate test guest once: TCG q35 with an emulated intel-iommu
# (interrupt remapping, caching mode), guest RAM in a shared memfd (so a
# vfio-user server can DMA into it), serial console into a log file.
#
# Usage: run-guest.sh --test NAME [options]
#   --test NAME          scenario (fg.test=NAME on the kernel command line)
#   --initrd FILE        default scripts/qemu/work/initramfs.cpio
#   --log FILE           serial console log (default scripts/qemu/work/NAME.log)
#   --timeout SEC        kill QEMU after SEC seconds (default 55; exit 124)
#   --vfio-user SOCKET   attach a vfio-user device (repeatable), each behind its
#                        own pcie-root-port; the server must already listen
#   --edu                attach QEMU's edu device (1234:11e8) behind a root port
#   --mem SIZE           guest RAM (default 512M)
#   --smp N              guest CPUs (default 1)
#   --append ARGS        extra kernel command line
#   --bzimage            boot vmlinuz instead of the extracted vmlinux (slower)
#   --qemu-arg ARG       extra QEMU argument (repeatable)
#   --verbose            copy the console to stderr as well
#   --interactive        console on this terminal, fg.shell=1 (a shell after the
#                        scenario; Ctrl-A X quits QEMU); no log file, no timeout
# Exit: QEMU's status (0 after the guest powered off), 124 on timeout.
# Prints the FG-RESULT / FG-DONE lines from the console and the wall time.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FG_QEMU_CACHE:-$HERE/cache}
WORK=${FG_QEMU_WORK:-$HERE/work}

die() { printf 'run-guest: error: %s\n' "$*" >&2; exit 2; }
[[ -r $CACHE/fetch.env ]] || die "$CACHE/fetch.env missing: run scripts/qemu/fetch.sh first"
# shellcheck source=/dev/null
source "$CACHE/fetch.env"

TEST=
INITRD=$WORK/initramfs.cpio
LOG=
TIMEOUT=55
MEM=512M
SMP=1
APPEND=
BZIMAGE=0
VERBOSE=0
SOCKETS=()
EXTRA=()
EDU=0
INTERACTIVE=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --test) TEST=$2; shift 2 ;;
        --initrd) INITRD=$2; shift 2 ;;
        --log) LOG=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --vfio-user) SOCKETS+=("$2"); shift 2 ;;
        --edu) EDU=1; shift ;;
        --mem) MEM=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --append) APPEND=$2; shift 2 ;;
        --bzimage) BZIMAGE=1; shift ;;
        --qemu-arg) EXTRA+=("$2"); shift 2 ;;
        --verbose) VERBOSE=1; shift ;;
        --interactive) INTERACTIVE=1; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done
[[ -n $TEST ]] || die "--test NAME is required"
[[ -r $INITRD ]] || die "initramfs $INITRD missing: run scripts/qemu/mkinitramfs.sh"
mkdir -p "$WORK"
LOG=${LOG:-$WORK/$TEST.log}

# The decompressed kernel (ELF with a PVH entry note) boots without the
# bzImage's self-decompression, which is slow under TCG. Extracted once.
kernel=$FG_KERNEL_ROOT/boot/vmlinuz-$FG_KVER
vmlinux=$CACHE/vmlinux-$FG_KVER
if [[ $BZIMAGE == 0 && ! -s $vmlinux ]]; then
    off=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$kernel" | head -n1 | cut -d: -f1 || true)
    if [[ -n $off ]]; then
        tail -c +"$((off + 1))" "$kernel" | xz -dcq --single-stream >"$vmlinux.tmp" 2>/dev/null || true
        if [[ $(head -c 4 "$vmlinux.tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
            mv "$vmlinux.tmp" "$vmlinux"
        fi
        rm -f "$vmlinux.tmp"
    fi
fi
if [[ $BZIMAGE == 0 && -s $vmlinux ]]; then kernel=$vmlinux; fi

Q=$FG_QEMU_ROOT
args=(
    -nodefaults -no-user-config -no-reboot
    -display none -monitor none
    -L "$Q/usr/share/qemu" -L "$Q/usr/share/seabios" -L "$Q/usr/lib/ipxe/qemu"
    -accel tcg
    -machine q35,kernel-irqchip=split,memory-backend=mem
    -object "memory-backend-memfd,id=mem,size=$MEM,share=on"
    -m "$MEM" -smp "$SMP"
    -device intel-iommu,intremap=on,caching-mode=on
    -chardev "file,id=con,path=$LOG"
    -serial chardev:con
    -kernel "$kernel"
    -initrd "$INITRD"
    -append "console=ttyS0 intel_iommu=on panic=-1 fg.test=$TEST $APPEND"
)
port=0
for sock in "${SOCKETS[@]}"; do
    [[ -S $sock ]] || die "vfio-user socket $sock does not exist (is the server running?)"
    port=$((port + 1))
    args+=(-device "pcie-root-port,id=rp$port,chassis=$port,slot=$port"
        -device "{\"driver\":\"vfio-user-pci\",\"bus\":\"rp$port\",\"socket\":{\"path\":\"$sock\",\"type\":\"unix\"}}")
done
if [[ $EDU == 1 ]]; then
    port=$((port + 1))
    args+=(-device "pcie-root-port,id=rp$port,chassis=$port,slot=$port" -device "edu,bus=rp$port")
fi
args+=("${EXTRA[@]}")

if [[ $INTERACTIVE == 1 ]]; then
    for i in "${!args[@]}"; do
        case ${args[$i]} in
            file,id=con,*) args[$i]=stdio,id=con,mux=on,signal=off ;;
            console=ttyS0*) args[$i]="${args[$i]} fg.shell=1" ;;
        esac
    done
    args+=(-mon chardev=con)
    Q=$FG_QEMU_ROOT
    QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu \
        exec "$FG_QEMU_LOADER" --library-path "$FG_QEMU_LIBS" "$Q/usr/bin/qemu-system-x86_64" "${args[@]}"
fi

: >"$LOG"
tailpid=
if [[ $VERBOSE == 1 ]]; then tail -n +1 -f "$LOG" >&2 & tailpid=$!; fi
t0=$(date +%s.%N)
rc=0
# QEMU_MODULE_DIR keeps QEMU away from a host QEMU's modules of another version.
QEMU_MODULE_DIR=$Q/usr/lib/x86_64-linux-gnu/qemu \
    timeout --kill-after=5 "$TIMEOUT" \
    "$FG_QEMU_LOADER" --library-path "$FG_QEMU_LIBS" "$Q/usr/bin/qemu-system-x86_64" \
    "${args[@]}" </dev/null >"$LOG.qemu" 2>&1 || rc=$?
t1=$(date +%s.%N)
[[ -n $tailpid ]] && { sleep 0.2; kill "$tailpid" 2>/dev/null || true; }
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

grep -a -E '^FG-(RESULT|DONE)' "$LOG" | tr -d '\r' || true
if [[ -s $LOG.qemu ]]; then sed 's/^/qemu: /' "$LOG.qemu" >&2; fi
if [[ $rc == 124 || $rc == 137 ]]; then
    echo "run-guest: $TEST timed out after ${TIMEOUT}s (log: $LOG)" >&2
    rc=124
fi
echo "run-guest: $TEST: qemu exit $rc after ${secs}s (log: $LOG)" >&2
echo "$secs" >"$LOG.seconds"
exit "$rc"
