#!/usr/bin/env bash
# Download everything the QEMU guest tests need, from Debian's archive only,
# into scripts/qemu/cache/ (git-ignored). Re-running uses the cache and needs
# no network.
#
#   QEMU >= 10.1 with vfio-user-pci   trixie-backports (qemu-system-x86 + closure)
#   guest kernel + modules            bookworm linux-image-6.1.0-*-amd64
#   guest userland                    bookworm busybox-static, iproute2, ethtool,
#                                     pciutils and their libraries
#
# Both distributions are resolved through private apt configurations (own
# sources, lists, archives and an empty dpkg status file); nothing is installed
# into the host system and no root is needed.
#
# Exit codes: 0 ok, 77 skipped (Debian's archive unreachable; exactly one line
# "skipped: no network to Debian's archive ..." is printed), other = failure.
#
# Environment:
#   FG_QEMU_CACHE          cache folder (default scripts/qemu/cache)
#   FG_DEBIAN_MIRROR       default http://deb.debian.org/debian
#   FG_DEBIAN_SECURITY     default http://deb.debian.org/debian-security
#   FG_FETCH_REFRESH=1     re-run apt-get update and re-resolve everything
# On success it writes $CACHE/fetch.env, which the other scripts source.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${FG_QEMU_CACHE:-$HERE/cache}
MIRROR=${FG_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY=${FG_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
SKIP_RC=77
MIN_QEMU=10.1

say() { printf 'fetch: %s\n' "$*" >&2; }
die() { printf 'fetch: error: %s\n' "$*" >&2; exit 1; }
skip() {
    # Exactly one line on stdout, the rest of the story on stderr.
    printf "skipped: no network to Debian's archive (%s)\n" "$1"
    exit "$SKIP_RC"
}
human() { numfmt --to=iec --suffix=B "$1" 2>/dev/null || echo "${1}B"; }

for tool in apt-get apt-cache dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is required (this script expects a Debian host)"
done
[[ -r $KEYRING ]] || die "$KEYRING missing (package debian-archive-keyring)"

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)

# --- private apt configurations -------------------------------------------

# apt_setup NAME SOURCES...: a self-contained apt tree under $CACHE/apt-NAME.
apt_setup() {
    local name=$1; shift
    local root=$CACHE/apt-$name
    mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/parts" \
        "$root/prefs" "$root/debs"
    : >"$root/status.tmp"; [[ -e $root/status ]] || mv "$root/status.tmp" "$root/status"
    rm -f "$root/status.tmp"
    printf '%s\n' "$@" >"$root/sources.list"
    # APT_CONFIG is read first; it points parts/main away from the host's
    # /etc/apt so host settings (docker-clean, appstream, proxies for other
    # repos) do not leak in.
    cat >"$root/apt.conf" <<EOF
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$root/parts";
Dir::Etc::sourcelist "$root/sources.list";
Dir::Etc::sourceparts "$root/parts";
Dir::Etc::preferences "/dev/null";
Dir::Etc::preferencesparts "$root/prefs";
Dir::State "$root";
Dir::State::Lists "$root/lists";
Dir::State::status "$root/status";
Dir::State::extended_states "$root/extended_states";
Dir::Cache "$root";
Dir::Cache::archives "$root/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Dir::Log "$root";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
APT::Install-Recommends "false";
Acquire::Languages "none";
Acquire::Retries "2";
Acquire::http::Timeout "30";
Debug::NoLocking "true";
EOF
}

# apt_run NAME ARGS...: run apt-get/apt-cache in the private tree; network
# errors become a skip, other errors a failure.
apt_run() {
    local name=$1 tool=$2; shift 2
    local root=$CACHE/apt-$name log
    log=$(mktemp)
    if APT_CONFIG=$root/apt.conf "$tool" "$@" 2> >(tee "$log" >&2); then
        rm -f "$log"; return 0
    fi
    sleep 0.2
    if [[ ${NET_OK:-} != 1 ]] && network_errors "$log"; then
        rm -f "$log"; skip "apt-get $* failed"
    fi
    rm -f "$log"; die "$tool $* failed (private apt tree $root)"
}

network_errors() {
    grep -Eqi 'could not resolve|temporary failure resolving|could not connect|connection (timed out|refused|failed)|unable to connect|network is unreachable' "$1"
}

# reachable URL: 0 yes, 1 no, 2 cannot tell (neither curl nor wget).
reachable() {
    if command -v curl >/dev/null; then curl -fsS -m 15 -o /dev/null "$1" 2>/dev/null
    elif command -v wget >/dev/null; then wget -q -T 15 -t 1 -O /dev/null "$1" 2>/dev/null
    else return 2; fi
}

# NET_OK=1: the archive answered a direct request, so a later apt failure is a
# real error; NET_OK=unknown: no HTTP client here, apt's own errors decide.
need_network() {
    [[ -n ${NET_OK:-} ]] && return 0
    local rc=0
    reachable "$MIRROR/dists/bookworm/InRelease" || rc=$?
    case $rc in
        0) reachable "$SECURITY/dists/bookworm-security/InRelease" || skip "$SECURITY unreachable"
           NET_OK=1 ;;
        2) NET_OK=unknown ;;
        *) skip "$MIRROR unreachable" ;;
    esac
}

apt_update() {
    local name=$1
    local root=$CACHE/apt-$name
    if [[ -n ${FG_FETCH_REFRESH:-} ]] || ! compgen -G "$root/lists/*_Packages*" >/dev/null; then
        need_network
        say "apt-get update ($name)"
        local log
        log=$(mktemp)
        # apt-get update exits 0 even when every source failed; judge by the lists.
        APT_CONFIG=$root/apt.conf apt-get -q update 2>&1 | tee "$log" >&2 || true
        if ! compgen -G "$root/lists/*_Packages*" >/dev/null; then
            if [[ ${NET_OK:-} != 1 ]] && network_errors "$log"; then
                rm -f "$log"; skip "apt-get update ($name) reached no source"
            fi
            rm -f "$log"; die "apt-get update ($name) produced no package lists"
        fi
        rm -f "$log"
    fi
}

apt_setup trixie \
    "deb [signed-by=$KEYRING] $MIRROR trixie main" \
    "deb [signed-by=$KEYRING] $MIRROR trixie-updates main" \
    "deb [signed-by=$KEYRING] $SECURITY trixie-security main" \
    "deb [signed-by=$KEYRING] $MIRROR trixie-backports main"
apt_setup bookworm \
    "deb [signed-by=$KEYRING] $MIRROR bookworm main" \
    "deb [signed-by=$KEYRING] $MIRROR bookworm-updates main" \
    "deb [signed-by=$KEYRING] $SECURITY bookworm-security main"

# extract_debs DIR DEB...: dpkg -x each .deb into DIR (fresh).
extract_debs() {
    local dir=$1; shift
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    local deb
    for deb in "$@"; do dpkg-deb -x "$deb" "$dir.tmp"; done
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
}

sum_sizes() {
    local total=0 f
    for f in "$@"; do total=$((total + $(stat -c %s "$f"))); done
    echo "$total"
}

# --- 1. QEMU from trixie-backports -----------------------------------------

QEMU_ROOT=$CACHE/qemu-root
if [[ -n ${FG_FETCH_REFRESH:-} || ! -e $QEMU_ROOT/.done ]]; then
    apt_update trixie
    need_network
    root=$CACHE/apt-trixie
    say "resolving qemu-system-x86 from trixie-backports"
    apt_run trixie apt-get -q -y install -d --no-install-recommends \
        -t trixie-backports qemu-system-x86 >&2
    # The download set is exactly what the resolver picked; list it again
    # (--print-uris on a complete cache prints nothing, so ask with -s).
    mapfile -t pkgs < <(APT_CONFIG=$root/apt.conf apt-get -s -q install --no-install-recommends \
        -t trixie-backports qemu-system-x86 | awk '/^Inst /{print $2"_"$3}' | tr -d '()')
    debs=()
    for p in "${pkgs[@]}"; do
        name=${p%%_*}; ver=${p#*_}; ver=${ver//:/%3a}
        f=$(compgen -G "$root/archives/${name}_${ver}_*.deb" | head -n1) \
            || die "downloaded .deb for $name $ver not found"
        debs+=("$f")
    done
    say "qemu: ${#debs[@]} packages, $(human "$(sum_sizes "${debs[@]}")")"
    say "extracting into $QEMU_ROOT"
    extract_debs "$QEMU_ROOT" "${debs[@]}"
    printf '%s\n' "${debs[@]##*/}" >"$QEMU_ROOT/.done"
else
    say "qemu: cached ($(wc -l <"$QEMU_ROOT/.done") packages in $QEMU_ROOT)"
fi
[[ -x $QEMU_ROOT/usr/bin/qemu-system-x86_64 ]] || die "no qemu-system-x86_64 in $QEMU_ROOT"
QEMU_LOADER=$QEMU_ROOT/usr/lib64/ld-linux-x86-64.so.2
[[ -e $QEMU_LOADER ]] || QEMU_LOADER=$QEMU_ROOT/lib64/ld-linux-x86-64.so.2
[[ -e $QEMU_LOADER ]] || die "trixie's loader not found in $QEMU_ROOT"
QEMU_LIBS=$QEMU_ROOT/usr/lib/x86_64-linux-gnu:$QEMU_ROOT/lib/x86_64-linux-gnu
qemu_version=$("$QEMU_LOADER" --library-path "$QEMU_LIBS" \
    "$QEMU_ROOT/usr/bin/qemu-system-x86_64" --version | sed -n '1s/.*version \([0-9.]*\).*/\1/p')
[[ -n $qemu_version ]] || die "could not run $QEMU_ROOT/usr/bin/qemu-system-x86_64"
if [[ $(printf '%s\n%s\n' "$MIN_QEMU" "$qemu_version" | sort -V | head -n1) != "$MIN_QEMU" ]]; then
    die "QEMU $qemu_version is older than $MIN_QEMU (no vfio-user-pci)"
fi
say "qemu: version $qemu_version"

# --- 2. guest kernel from bookworm -----------------------------------------

KERNEL_ROOT=$CACHE/kernel-root
if [[ -n ${FG_FETCH_REFRESH:-} || ! -e $KERNEL_ROOT/.done ]]; then
    apt_update bookworm
    need_network
    root=$CACHE/apt-bookworm
    kpkg=$(APT_CONFIG=$root/apt.conf apt-cache depends linux-image-amd64 \
        | sed -n 's/^ *Depends: \(linux-image-6\.1\.0-[0-9]*-amd64\)$/\1/p' | head -n1)
    [[ -n $kpkg ]] || die "could not resolve linux-image-amd64 to a linux-image-6.1.0-*-amd64"
    say "kernel: downloading $kpkg"
    (cd "$root/debs" && apt_run bookworm apt-get -q download "$kpkg" >&2)
    kdeb=$(ls -t "$root/debs/${kpkg}"_*.deb | head -n1)
    say "kernel: $(basename "$kdeb") $(human "$(stat -c %s "$kdeb")")"
    say "extracting into $KERNEL_ROOT"
    extract_debs "$KERNEL_ROOT" "$kdeb"
    basename "$kdeb" >"$KERNEL_ROOT/.done"
else
    say "kernel: cached ($(cat "$KERNEL_ROOT/.done"))"
fi
KVER=$(ls "$KERNEL_ROOT/lib/modules" | head -n1)
[[ -n $KVER && -e $KERNEL_ROOT/boot/vmlinuz-$KVER ]] || die "no vmlinuz in $KERNEL_ROOT"
for m in vfio vfio_iommu_type1 vfio-pci vfio-pci-core irqbypass ixgbevf tun; do
    find "$KERNEL_ROOT/lib/modules/$KVER" -name "$m.ko*" | grep -q . \
        || die "module $m missing from $KVER"
done
say "kernel: $KVER"

# --- 3. guest userland from bookworm ---------------------------------------

GUEST_PKGS=(busybox-static iproute2 ethtool pciutils)
GUEST_ROOT=$CACHE/guest-root
if [[ -n ${FG_FETCH_REFRESH:-} || ! -e $GUEST_ROOT/.done ]]; then
    apt_update bookworm
    need_network
    root=$CACHE/apt-bookworm
    say "guest userland: resolving ${GUEST_PKGS[*]}"
    apt_run bookworm apt-get -q -y install -d --no-install-recommends "${GUEST_PKGS[@]}" >&2
    mapfile -t pkgs < <(APT_CONFIG=$root/apt.conf apt-get -s -q install --no-install-recommends \
        "${GUEST_PKGS[@]}" | awk '/^Inst /{print $2"_"$3}' | tr -d '()')
    debs=()
    for p in "${pkgs[@]}"; do
        name=${p%%_*}; ver=${p#*_}; ver=${ver//:/%3a}
        f=$(compgen -G "$root/archives/${name}_${ver}_*.deb" | head -n1) \
            || die "downloaded .deb for $name $ver not found"
        debs+=("$f")
    done
    say "guest userland: ${#debs[@]} packages, $(human "$(sum_sizes "${debs[@]}")")"
    extract_debs "$GUEST_ROOT" "${debs[@]}"
    printf '%s\n' "${debs[@]##*/}" >"$GUEST_ROOT/.done"
else
    say "guest userland: cached ($(wc -l <"$GUEST_ROOT/.done") packages in $GUEST_ROOT)"
fi
[[ -x $GUEST_ROOT/bin/busybox ]] || die "no busybox in $GUEST_ROOT"

cat >"$CACHE/fetch.env" <<EOF
# written by scripts/qemu/fetch.sh; sourced by the other scripts
FG_QEMU_ROOT=$QEMU_ROOT
FG_QEMU_LOADER=$QEMU_LOADER
FG_QEMU_LIBS=$QEMU_LIBS
FG_QEMU_VERSION=$qemu_version
FG_KERNEL_ROOT=$KERNEL_ROOT
FG_KVER=$KVER
FG_GUEST_ROOT=$GUEST_ROOT
EOF
say "cache: $(du -sh --apparent-size "$CACHE" | cut -f1) in $CACHE"
say "ok"
