#!/usr/bin/env bash
# Build the Debian package of floodgate with dpkg-deb (no cargo-deb, no debhelper needed).
#
#   scripts/build-deb.sh [--binary PATH] [--out DIR]
#
#   --binary PATH   the floodgate binary to package (default: `cargo build --release` and
#                   Cargo's target directory's release/floodgate)
#   --out DIR       where to write floodgate_<version>_<arch>.deb (default: the target directory)
#   --fast          gzip -1 instead of xz (tests package the large debug binary)
#
# Prints the path of the .deb on stdout. What goes where:
#   /usr/bin/floodgate                                  the binary
#   /usr/lib/systemd/system/floodgate{,@}.service       the units (docs/systemd.md)
#   /usr/share/floodgate/systemd/af-xdp.conf            drop-in for the AF_XDP backend
#   /etc/floodgate/floodgate.toml                       examples/floodgate.toml, a conffile
#   /usr/share/man/man1/floodgate*.1.gz                 `floodgate man`, one page per subcommand
#   /usr/share/bash-completion/completions/floodgate    `floodgate completions bash`
#   /usr/share/zsh/vendor-completions/_floodgate        `floodgate completions zsh`
#   /usr/share/fish/vendor_completions.d/floodgate.fish `floodgate completions fish`
#   /usr/sbin/floodgate-setup-vf, floodgate-teardown-vf scripts/setup-vf.sh, teardown-vf.sh
#   /usr/share/floodgate/grafana/floodgate.json         the Grafana dashboard
#   /usr/share/doc/floodgate/                           README, docs/*.md, examples, copyright
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=
OUT=
COMPRESS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) BIN=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --fast) COMPRESS=(-Zgzip -z1); shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

command -v dpkg-deb >/dev/null || { echo "build-deb.sh: dpkg-deb not found (it comes with dpkg)" >&2; exit 3; }

TARGET=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET" ] || TARGET=${CARGO_TARGET_DIR:-target}
if [ -z "$BIN" ]; then
    cargo build --release -p floodgate >&2
    BIN=$TARGET/release/floodgate
fi
[ -x "$BIN" ] || { echo "build-deb.sh: $BIN is not an executable" >&2; exit 1; }
OUT=${OUT:-$TARGET}
mkdir -p "$OUT"

VERSION=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$VERSION" ] || { echo "build-deb.sh: no version in Cargo.toml's [package]" >&2; exit 1; }
BINVER=$("$BIN" --version | awk '{print $2}')
[ "$BINVER" = "$VERSION" ] || { echo "build-deb.sh: $BIN is version $BINVER, Cargo.toml says $VERSION" >&2; exit 1; }
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
R=$STAGE/root
install -d "$R/DEBIAN" "$R/usr/bin" "$R/usr/sbin" "$R/usr/lib/systemd/system" "$R/etc/floodgate" \
    "$R/usr/share/man/man1" "$R/usr/share/bash-completion/completions" \
    "$R/usr/share/zsh/vendor-completions" "$R/usr/share/fish/vendor_completions.d" \
    "$R/usr/share/floodgate/grafana" "$R/usr/share/floodgate/systemd" "$R/usr/share/doc/floodgate/docs" \
    "$R/usr/share/doc/floodgate/examples"

install -m 0755 "$BIN" "$R/usr/bin/floodgate"
install -m 0644 dist/systemd/floodgate.service dist/systemd/floodgate@.service "$R/usr/lib/systemd/system/"
install -m 0644 dist/systemd/af-xdp.conf "$R/usr/share/floodgate/systemd/"
install -m 0644 examples/floodgate.toml "$R/etc/floodgate/floodgate.toml"
"$BIN" man --out "$STAGE/man"
for page in "$STAGE"/man/*.1; do
    gzip -9n -c "$page" > "$R/usr/share/man/man1/$(basename "$page").gz"
done
"$BIN" completions bash > "$R/usr/share/bash-completion/completions/floodgate"
"$BIN" completions zsh > "$R/usr/share/zsh/vendor-completions/_floodgate"
"$BIN" completions fish > "$R/usr/share/fish/vendor_completions.d/floodgate.fish"
install -m 0755 scripts/setup-vf.sh "$R/usr/sbin/floodgate-setup-vf"
install -m 0755 scripts/teardown-vf.sh "$R/usr/sbin/floodgate-teardown-vf"
install -m 0644 dist/grafana/floodgate.json "$R/usr/share/floodgate/grafana/"
install -m 0644 README.md "$R/usr/share/doc/floodgate/"
install -m 0644 docs/*.md "$R/usr/share/doc/floodgate/docs/"
install -m 0644 examples/floodgate.toml examples/demo.toml "$R/usr/share/doc/floodgate/examples/"
cat > "$R/usr/share/doc/floodgate/copyright" <<COPY
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: floodgate

Files: *
License: Apache-2.0 OR MIT
COPY

echo /etc/floodgate/floodgate.toml > "$R/DEBIAN/conffiles"
cat > "$R/DEBIAN/postinst" <<'SH'
#!/bin/sh
# The units are installed but not enabled: the VF must be set up first (floodgate-setup-vf),
# then `systemctl enable --now floodgate`.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SH
cat > "$R/DEBIAN/prerm" <<'SH'
#!/bin/sh
# Stopping removes the daemon's steering rules from the PF.
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop floodgate.service 'floodgate@*.service' || true
fi
SH
cat > "$R/DEBIAN/postrm" <<'SH'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
SH
chmod 0755 "$R/DEBIAN/postinst" "$R/DEBIAN/prerm" "$R/DEBIAN/postrm"

SIZE=$(du -sk --exclude=DEBIAN "$R" | cut -f1)
cat > "$R/DEBIAN/control" <<CTRL
Package: floodgate
Version: $VERSION
Architecture: $ARCH
Maintainer: floodgate developers <floodgate@example.invalid>
Installed-Size: $SIZE
Depends: libc6, libgcc-s1
Recommends: libpcap0.8, ethtool, iproute2
Section: net
Priority: optional
Homepage: https://example.invalid/floodgate
Description: flood filter on an ixgbe SR-IOV VF over VFIO
 floodgate steers the attacked flows into an 82599/X540 virtual function with the PF's
 flow director, drops the flood at line rate in a user-space poll-mode driver, and
 reinjects the survivors into the kernel through a TAP device (or back out of the VF).
 .
 This package holds the daemon, its systemd units, man pages, shell completions, the VF
 set-up scripts, a Grafana dashboard and the documentation.
CTRL

DEB=$OUT/floodgate_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group "${COMPRESS[@]}" --build "$R" "$DEB" >&2
echo "$DEB"
