#!/usr/bin/env bash
# Build one Debian package of a CitySense program with dpkg-deb.
#
#   deploy/deb/build.sh PROG DEBARCH VERSION BINARY OUTDIR
#
# PROG is agent or collector, DEBARCH amd64, arm64 or armhf, VERSION a Debian
# version (it must start with a digit), BINARY the static binary built for
# that architecture. The package is written to
# OUTDIR/citysense-PROG_VERSION_DEBARCH.deb. File times come from
# SOURCE_DATE_EPOCH (the Makefile sets it to the commit time), so two builds of
# one commit are byte for byte identical.
set -euo pipefail

if [ $# -ne 5 ]; then
	echo "usage: $0 agent|collector amd64|arm64|armhf VERSION BINARY OUTDIR" >&2
	exit 2
fi
prog=$1 arch=$2 version=$3 binary=$4 outdir=$5
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

case "$prog" in
agent)
	other=citysense-collector
	summary="CitySense edge agent: city sensor readings to the collector"
	long=" The agent runs next to the devices (Raspberry Pi, ARM gateways), speaks
 their protocols (MQTT, Modbus TCP/RTU, HTTP line protocol, CoAP), keeps
 every reading in a durable on-disk buffer and forwards it to a CitySense
 collector over NATS JetStream when the uplink is there."
	;;
collector)
	other=citysense-agent
	summary="CitySense collector: ingest, store and publish city sensor data"
	long=" The collector receives batches from CitySense agents over an embedded
 NATS JetStream server and from Influx-compatible writers, enriches and
 stores them as time series, and serves a read-only public API and a data
 portal. It runs as one node or as a cluster."
	;;
*)
	echo "build.sh: program $prog: want agent or collector" >&2
	exit 2
	;;
esac
case "$arch" in amd64 | arm64 | armhf) ;; *)
	echo "build.sh: architecture $arch: want amd64, arm64 or armhf" >&2
	exit 2
	;;
esac
if ! [[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
	echo "build.sh: version $version: a native Debian version starts with a digit and has only A-Z a-z 0-9 . + ~" >&2
	exit 2
fi
[ -x "$binary" ] || {
	echo "build.sh: $binary is not an executable file" >&2
	exit 2
}
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}

pkg=citysense-$prog
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
st=$work/$pkg
umask 022
mkdir -p "$st/DEBIAN" "$st/usr/bin" "$st/etc/citysense" "$st/lib/systemd/system" "$st/usr/share/doc/$pkg"

install -m 0755 "$binary" "$st/usr/bin/$pkg"
# The packaged configuration is the documented default, with the data in
# the program's own directory under /var/lib/citysense.
sed "s#^  data_dir: /var/lib/citysense\$#  data_dir: /var/lib/citysense/$prog#" "$root/configs/$prog.yaml" >"$st/etc/citysense/$prog.yaml"
grep -q "^  data_dir: /var/lib/citysense/$prog\$" "$st/etc/citysense/$prog.yaml" || {
	echo "build.sh: configs/$prog.yaml has no 'data_dir: /var/lib/citysense' line to point at /var/lib/citysense/$prog" >&2
	exit 1
}
install -m 0644 "$root/deploy/systemd/$pkg.service" "$st/lib/systemd/system/$pkg.service"

changelog_date=$(date -u -R -d "@$epoch")
cat >"$work/changelog" <<CHANGELOG
$pkg ($version) unstable; urgency=medium

  * Built from the CitySense repository; see its history for the changes.

 -- CitySense developers <packaging@citysense.example.org>  $changelog_date
CHANGELOG
gzip -9n <"$work/changelog" >"$st/usr/share/doc/$pkg/changelog.gz"
cat >"$st/usr/share/doc/$pkg/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: CitySense

Files: *
Copyright: 2025-2026 the CitySense authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in the file /usr/share/common-licenses/Apache-2.0.
COPYRIGHT

# Go links statically by design (CGO_ENABLED=0: one file that runs on any
# libc, or none). Lintian exempts Go only when it sees a source package that
# build-depends on golang-go, which a binary-only build has not got.
mkdir -p "$st/usr/share/lintian/overrides"
printf '# Go binaries are static on purpose: CGO_ENABLED=0, no libc dependency.\n%s: statically-linked-binary [usr/bin/%s]\n' "$pkg" "$pkg" >"$st/usr/share/lintian/overrides/$pkg"

for s in postinst prerm postrm; do
	sed -e "s/@PROG@/$prog/g" -e "s/@OTHER@/$other/g" "$here/$s" >"$st/DEBIAN/$s"
	chmod 0755 "$st/DEBIAN/$s"
done
echo "/etc/citysense/$prog.yaml" >"$st/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$st" | cut -f1)
cat >"$st/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: $arch
Maintainer: CitySense developers <packaging@citysense.example.org>
Installed-Size: $size
Depends: adduser
Section: net
Priority: optional
Description: $summary
$long
CONTROL
(cd "$st" && find . -path ./DEBIAN -prune -o -type f -print | sed 's#^\./##' | LC_ALL=C sort | xargs md5sum) >"$st/DEBIAN/md5sums"
chmod 0644 "$st/DEBIAN/control" "$st/DEBIAN/conffiles" "$st/DEBIAN/md5sums"
find "$st" -exec touch -h -d "@$epoch" {} +

mkdir -p "$outdir"
out=$outdir/${pkg}_${version}_${arch}.deb
SOURCE_DATE_EPOCH=$epoch dpkg-deb --root-owner-group -Zxz --build "$st" "$out" >/dev/null
echo "$out"
