#!/usr/bin/env bash
# Build the guest initramfs (cpio newc) from what fetch.sh cached:
#   - busybox-static (shell, mount, insmod, poweroff, ...)
#   - kernel modules (with their `depends=` closure, in insmod order)
#   - the real iproute2 / ethtool / lspci / setpci with their shared libraries
#   - scenarios from scripts/qemu/scenarios/*.sh, selected at boot by fg.test=NAME
#   - extra binaries given with --bin (our statically linked test programs)
#
# Usage: mkinitramfs.sh [-o OUT] [--gzip] [--modules "m1 m2 ..."]
#                       [--bin HOSTPATH[:GUESTPATH]]... [--file HOSTPATH:GUESTPATH]...
# Default OUT is scripts/qemu/work/initramfs.cpio (uncompressed: under TCG the
# kernel's gunzip costs more than loading a few more MB through fw_cfg).
# --bin puts a program at GUESTPATH (default /bin/<name>); dynamically linked
# programs get their libraries from the bookworm guest root, so build test
# programs static (musl, or glibc with -C target-feature=+crt-static).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FG_QEMU_CACHE:-$HERE/cache}
WORK=${FG_QEMU_WORK:-$HERE/work}

die() { printf 'mkinitramfs: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'mkinitramfs: %s\n' "$*" >&2; }

[[ -r $CACHE/fetch.env ]] || die "$CACHE/fetch.env missing: run scripts/qemu/fetch.sh first"
# shellcheck source=/dev/null
source "$CACHE/fetch.env"

OUT=$WORK/initramfs.cpio
GZIP=0
MODULES="vfio vfio_iommu_type1 vfio-pci ixgbevf 8021q tun"
BINS=()
FILES=()
while [[ $# -gt 0 ]]; do
    case $1 in
        -o) OUT=$2; shift 2 ;;
        --gzip) GZIP=1; shift ;;
        --modules) MODULES=$2; shift 2 ;;
        --bin) BINS+=("$2"); shift 2 ;;
        --file) FILES+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) die "unknown argument $1" ;;
    esac
done

G=$FG_GUEST_ROOT
MODROOT=$FG_KERNEL_ROOT/lib/modules/$FG_KVER
STAGE=$WORK/initramfs-root
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,lib/modules,lib64,proc,sys,dev,tmp,run,etc,scenarios,usr/share/misc}
mkdir -p "$(dirname "$OUT")"

# --- busybox ----------------------------------------------------------------
cp "$G/bin/busybox" "$STAGE/bin/busybox"
# Applets as symlinks in /bin only; the real tools below live in /sbin and
# /usr/bin and must be called by full path (busybox prefers its own applets).
for a in $("$G/bin/busybox" --list); do
    [[ -e $STAGE/bin/$a ]] || ln -s busybox "$STAGE/bin/$a"
done

# --- shared-library closure ------------------------------------------------
LIBDIRS=("$G/lib/x86_64-linux-gnu" "$G/usr/lib/x86_64-linux-gnu" "$G/lib" "$G/usr/lib")
declare -A HAVE_LIB=()
needed() { objdump -p "$1" 2>/dev/null | awk '$1=="NEEDED"{print $2}' || true; }
copy_libs() {
    local f=$1 lib d src rel
    for lib in $(needed "$f"); do
        [[ -n ${HAVE_LIB[$lib]:-} ]] && continue
        src=
        for d in "${LIBDIRS[@]}"; do
            if [[ -e $d/$lib ]]; then src=$d/$lib; break; fi
        done
        [[ -n $src ]] || die "library $lib (needed by ${f#"$STAGE"}) not in the guest root"
        rel=${src#"$G"}
        mkdir -p "$STAGE$(dirname "$rel")"
        cp -L "$src" "$STAGE$rel"
        HAVE_LIB[$lib]=1
        copy_libs "$STAGE$rel"
    done
}
add_prog() { # add_prog HOSTFILE GUESTPATH
    local src=$1 dst=$2
    [[ -e $src ]] || die "$src not found"
    mkdir -p "$STAGE$(dirname "$dst")"
    cp -L "$src" "$STAGE$dst"
    chmod 0755 "$STAGE$dst"
    copy_libs "$STAGE$dst" # nothing to do for static programs
}

# The dynamic loader at the path every program asks for.
cp -L "$G/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$STAGE/lib64/ld-linux-x86-64.so.2"
HAVE_LIB[ld-linux-x86-64.so.2]=1

add_prog "$G/sbin/ip" /sbin/ip
add_prog "$G/sbin/ethtool" /sbin/ethtool
add_prog "$G/usr/bin/lspci" /usr/bin/lspci
add_prog "$G/usr/bin/setpci" /usr/bin/setpci
cp -L "$G/usr/share/misc/pci.ids" "$STAGE/usr/share/misc/pci.ids"
[[ -e $G/etc/iproute2 ]] && cp -a "$G/etc/iproute2" "$STAGE/etc/"

# --- kernel modules ----------------------------------------------------------
mod_file() { # name (- and _ are the same to the kernel)
    local n=$1 alt
    alt=$(tr '_-' '-_' <<<"$n")
    find "$MODROOT/kernel" \( -name "$n.ko" -o -name "$n.ko.xz" -o -name "$n.ko.zst" \
        -o -name "$alt.ko" -o -name "$alt.ko.xz" -o -name "$alt.ko.zst" \) -print -quit
}
mod_depends() { # the depends= field of .modinfo (no modinfo(8) needed)
    local f=$1
    case $f in
        *.xz) xz -dc "$f" ;; *.zst) zstd -dcq "$f" ;; *) cat "$f" ;;
    esac | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ' || true
}
declare -A MOD_SEEN=()
ORDER=()
visit() { # depth-first: dependencies first
    local n=$1 f dep
    n=${n//-/_}
    [[ -n ${MOD_SEEN[$n]:-} ]] && return 0
    MOD_SEEN[$n]=1
    f=$(mod_file "$n")
    [[ -n $f ]] || die "module $n not found under $MODROOT"
    for dep in $(mod_depends "$f"); do visit "$dep"; done
    ORDER+=("$f")
}
for m in $MODULES; do visit "$m"; done
: >"$STAGE/lib/modules/order"
for f in "${ORDER[@]}"; do
    base=$(basename "$f"); base=${base%.xz}; base=${base%.zst}
    case $f in
        *.xz) xz -dc "$f" >"$STAGE/lib/modules/$base" ;;
        *.zst) zstd -dcq "$f" >"$STAGE/lib/modules/$base" ;;
        *) cp "$f" "$STAGE/lib/modules/$base" ;;
    esac
    echo "$base" >>"$STAGE/lib/modules/order"
done
say "modules: $(tr '\n' ' ' <"$STAGE/lib/modules/order")"

# --- scenarios, init, extras -------------------------------------------------
cp "$HERE"/scenarios/*.sh "$STAGE/scenarios/"
cp "$HERE/guest-init.sh" "$STAGE/init"
chmod 0755 "$STAGE/init" "$STAGE"/scenarios/*.sh

for spec in "${BINS[@]}"; do
    src=${spec%%:*}; dst=${spec#*:}
    [[ $dst == "$spec" ]] && dst=/bin/$(basename "$src")
    add_prog "$src" "$dst"
    say "extra binary: $src -> $dst"
done
for spec in "${FILES[@]}"; do
    src=${spec%%:*}; dst=${spec#*:}
    [[ $dst != "$spec" ]] || die "--file needs HOSTPATH:GUESTPATH"
    mkdir -p "$STAGE$(dirname "$dst")"
    cp -L "$src" "$STAGE$dst"
done

# --- archive -----------------------------------------------------------------
# busybox's cpio (static, from the cache) so the host needs no cpio package.
tmp=$OUT.tmp
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | "$G/bin/busybox" cpio -o -H newc -R 0:0) >"$tmp" 2>/dev/null
if [[ $GZIP == 1 ]]; then gzip -1 -c "$tmp" >"$OUT"; rm -f "$tmp"; else mv "$tmp" "$OUT"; fi
say "wrote $OUT ($(du -h --apparent-size "$OUT" | cut -f1))"
