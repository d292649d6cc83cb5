#!/bin/sh
# install.sh: install or update the CitySense agent on one gateway, in one
# command. POSIX sh, so it runs on Debian (dash), Raspberry Pi OS and OpenWrt
# (busybox ash).
#
#   sudo sh install.sh --collector nats://collector.city.example:4222 \
#       --id gw-017 --creds ./gw-017.creds
#
# It detects the CPU architecture and installs, from the directory given with
# --from (default: the one this script is in, e.g. an unpacked release or the
# repository's dist/ after `make cross deb`):
#   - the .deb package for that architecture when dpkg is there and one is
#     found (dist/deb/citysense-agent_*_<arch>.deb or ./citysense-agent_*.deb),
#   - otherwise the static binary (citysense-agent-linux-<arch>, checked
#     against SHA256SUMS when that file is there) plus a systemd unit, or a
#     procd init script on OpenWrt.
# It then writes /etc/citysense/agent.yaml from the flags, checks it with
# `citysense-agent check`, and (re)starts the service when systemd or procd
# runs. Running it again with the same flags changes nothing; with other
# flags it changes just what differs.
set -eu

PROG=citysense-agent
ETC=/etc/citysense
CONFIG=$ETC/agent.yaml
CREDS_DST=$ETC/agent.creds
DATA=/var/lib/citysense/agent
MARKER="# Written by citysense install.sh."

usage() {
	cat <<'EOF'
Usage: install.sh --collector URL --id ID [options]

  --collector URL   the collector's NATS address: nats://HOST:4222, or
                    tls://HOST:4222 for TLS; several comma-separated
  --id ID           this gateway's agent id (1-64 of A-Z a-z 0-9 _ -);
                    unique in the city and never changed
  --creds FILE      credentials from `citysense-collector agent add ID`;
                    copied to /etc/citysense/agent.creds (0640 root:citysense)
  --inputs FILE     a YAML file with the `inputs:` block to use; default: the
                    HTTP line-protocol input on 127.0.0.1:8186 (or the inputs
                    of the config this script wrote before)
  --http ADDR       the agent's /healthz /readyz /status /metrics address
                    (default 127.0.0.1:9274; "" turns it off)
  --from DIR        where the packages and binaries are (default: this
                    script's directory)
  --method M        auto (default), deb or binary
  --arch A          amd64, arm64, armv7, armv6, riscv64 or mipsle; default:
                    detected from the CPU
  --no-start        install and configure, but neither start nor restart
  -h, --help        this text
EOF
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}
say() { echo "install.sh: $*"; }

COLLECTOR= ID= CREDS= INPUTS= FROM= METHOD=auto ARCH= START=yes HTTP=127.0.0.1:9274
while [ $# -gt 0 ]; do
	opt=$1
	case $opt in
	-h | --help)
		usage
		exit 0
		;;
	--no-start)
		START=no
		shift
		continue
		;;
	--*=*)
		val=${opt#*=}
		opt=${opt%%=*}
		shift
		;;
	--*)
		[ $# -ge 2 ] || die "$opt needs a value (see --help)"
		val=$2
		shift 2
		;;
	*) die "unexpected argument '$opt' (see --help)" ;;
	esac
	case $opt in
	--collector) COLLECTOR=$val ;;
	--id) ID=$val ;;
	--creds) CREDS=$val ;;
	--inputs) INPUTS=$val ;;
	--http) HTTP=$val ;;
	--from) FROM=$val ;;
	--method) METHOD=$val ;;
	--arch) ARCH=$val ;;
	*) die "unknown option $opt (see --help)" ;;
	esac
done

# ---- check the flags before touching anything
[ -n "$COLLECTOR" ] || die "--collector URL is required, e.g. --collector nats://collector.city.example:4222"
[ -n "$ID" ] || die "--id ID is required, e.g. --id gw-017"
case $ID in *[!A-Za-z0-9_-]*) die "--id '$ID': only A-Z a-z 0-9 _ - are allowed (it is a NATS subject token)" ;; esac
[ ${#ID} -le 64 ] || die "--id '$ID': at most 64 characters"
old_ifs=$IFS
IFS=,
for u in $COLLECTOR; do
	case $u in
	nats://?* | tls://?*) ;;
	*) die "--collector '$u': want nats://HOST:PORT or tls://HOST:PORT" ;;
	esac
	case $u in *[[:space:]\"\'\\]*) die "--collector '$u': spaces and quotes are not allowed" ;; esac
done
IFS=$old_ifs
case $HTTP in *[[:space:]\"\'\\]*) die "--http '$HTTP': spaces and quotes are not allowed" ;; esac
if [ -n "$CREDS" ]; then
	[ -f "$CREDS" ] && [ -r "$CREDS" ] || die "--creds $CREDS: not a readable file"
	[ -s "$CREDS" ] || die "--creds $CREDS: the file is empty"
fi
if [ -n "$INPUTS" ]; then
	[ -r "$INPUTS" ] || die "--inputs $INPUTS: not a readable file"
	head -n 50 "$INPUTS" | grep -q '^inputs:' || die "--inputs $INPUTS: want a YAML file with a top-level 'inputs:' block"
fi
case $METHOD in auto | deb | binary) ;; *) die "--method '$METHOD': want auto, deb or binary" ;; esac
[ "$(id -u)" -eq 0 ] || die "run it as root (sudo sh install.sh ...)"
[ -n "$FROM" ] || FROM=$(cd "$(dirname "$0")" && pwd)
[ -d "$FROM" ] || die "--from $FROM: not a directory"

# ---- architecture: the name of the build (make cross) and of the Debian port
if [ -z "$ARCH" ]; then
	m=$(uname -m)
	case $m in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	armv7* | armv8l) ARCH=armv7 ;;
	armv6*) ARCH=armv6 ;;
	riscv64) ARCH=riscv64 ;;
	mipsel | mipsle) ARCH=mipsle ;;
	mips)
		# OpenWrt says "mips" for both byte orders; the ELF header of the
		# shell says which (EI_DATA: 1 little-endian, 2 big-endian).
		order=$(dd if=/bin/sh bs=1 skip=5 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
		[ "$order" = 1 ] || die "big-endian MIPS ($m) has no CitySense build; use a mipsle gateway"
		ARCH=mipsle
		;;
	*) die "CPU architecture $m has no CitySense build (amd64, arm64, armv7, armv6, riscv64, mipsle)" ;;
	esac
fi
case $ARCH in
amd64 | arm64) DEBARCH=$ARCH ;;
armv7) DEBARCH=armhf ;;
armv6 | riscv64 | mipsle) DEBARCH= ;; # binary only (Debian's armhf needs ARMv7)
*) die "--arch '$ARCH': want amd64, arm64, armv7, armv6, riscv64 or mipsle" ;;
esac

# ---- find what to install
DEB=
if [ "$METHOD" != binary ] && [ -n "$DEBARCH" ] && command -v dpkg >/dev/null 2>&1; then
	for f in "$FROM"/deb/${PROG}_*_"$DEBARCH".deb "$FROM"/${PROG}_*_"$DEBARCH".deb; do
		[ -f "$f" ] && DEB=$f
	done
fi
if [ "$METHOD" = deb ] && [ -z "$DEB" ]; then
	die "--method deb: no ${PROG}_*_${DEBARCH:-?}.deb in $FROM or $FROM/deb (or dpkg is missing, or $ARCH has no package)"
fi
BIN=
if [ -z "$DEB" ]; then
	BIN=$FROM/$PROG-linux-$ARCH
	[ -f "$BIN" ] || die "no package and no binary for $ARCH in $FROM (want $PROG-linux-$ARCH, from make cross)"
	if [ -f "$FROM/SHA256SUMS" ] && command -v sha256sum >/dev/null 2>&1; then
		want=$(grep " \*\{0,1\}$PROG-linux-$ARCH\$" "$FROM/SHA256SUMS" | cut -d' ' -f1)
		[ -n "$want" ] || die "$FROM/SHA256SUMS has no line for $PROG-linux-$ARCH"
		got=$(sha256sum "$BIN" | cut -d' ' -f1)
		[ "$got" = "$want" ] || die "$BIN does not match SHA256SUMS: a damaged copy?"
	fi
fi

changed=no
systemd_running=no
[ -d /run/systemd/system ] && systemd_running=yes
openwrt=no
[ -f /etc/openwrt_release ] && [ -f /etc/rc.common ] && openwrt=yes

if [ -n "$DEB" ]; then
	# ---- the package: binary, unit, user, data dir, enablement
	want=$(dpkg-deb -f "$DEB" Version)
	have=$(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' "$PROG" 2>/dev/null || true)
	if [ "$have" != "$want ii " ] && [ "$have" != "$want ii" ]; then
		say "installing $(basename "$DEB")"
		# The package would start the service on its default configuration
		# (simulated stations) before this script writes the real one:
		# Debian's policy-rc.d hook tells deb-systemd-invoke not to.
		policy=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			policy=/usr/sbin/policy-rc.d
			printf '#!/bin/sh\n# install.sh: no service starts while it installs\nexit 101\n' >"$policy"
			chmod 0755 "$policy"
			trap 'rm -f "$policy"' EXIT
		fi
		# The configuration is this script's business: keep whatever is in
		# /etc/citysense/agent.yaml through an upgrade.
		DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i "$DEB" >/dev/null
		[ -z "$policy" ] || rm -f "$policy"
		trap - EXIT
		changed=yes
	fi
else
	# ---- the binary, the user, the data dir and the service
	dst=/usr/bin/$PROG
	if ! cmp -s "$BIN" "$dst" 2>/dev/null; then
		say "installing $PROG ($ARCH) to $dst"
		# Beside the target, then renamed: a running agent keeps its file.
		cp "$BIN" "$dst.new"
		chmod 0755 "$dst.new"
		mv -f "$dst.new" "$dst"
		changed=yes
	fi
	if ! grep -q '^citysense:' /etc/passwd; then
		if command -v useradd >/dev/null 2>&1; then
			useradd --system --user-group --home-dir /var/lib/citysense --no-create-home \
				--shell /usr/sbin/nologin --comment CitySense citysense
		elif command -v adduser >/dev/null 2>&1; then # busybox
			grep -q '^citysense:' /etc/group || addgroup -S citysense
			adduser -S -D -H -h /var/lib/citysense -s /sbin/nologin -G citysense citysense
		else
			die "cannot create the system user citysense: neither useradd nor adduser is here"
		fi
		changed=yes
	fi
	mkdir -p /var/lib/citysense "$DATA"
	chown citysense:citysense "$DATA"
	chmod 0750 "$DATA"
	if [ "$openwrt" = yes ]; then
		unit=/etc/init.d/$PROG
		tmp=$(mktemp)
		cat >"$tmp" <<'EOF'
#!/bin/sh /etc/rc.common
# CitySense agent, written by install.sh. procd restarts it when it dies.
USE_PROCD=1
START=95
STOP=10
start_service() {
	procd_open_instance
	procd_set_param command /usr/bin/citysense-agent run -c /etc/citysense/agent.yaml
	procd_set_param user citysense
	procd_set_param respawn 3600 5 0
	procd_set_param stdout 1
	procd_set_param stderr 1
	procd_close_instance
}
reload_service() {
	procd_send_signal citysense-agent
}
EOF
		if ! cmp -s "$tmp" "$unit" 2>/dev/null; then
			mv -f "$tmp" "$unit"
			chmod 0755 "$unit"
			changed=yes
		else
			rm -f "$tmp"
		fi
		"$unit" enable
	else
		unit_src=
		for f in "$FROM/$PROG.service" "$FROM/systemd/$PROG.service" "$(dirname "$0")/systemd/$PROG.service"; do
			[ -f "$f" ] && unit_src=$f && break
		done
		[ -n "$unit_src" ] || die "no $PROG.service in $FROM or $FROM/systemd (it is deploy/systemd/$PROG.service in the repository)"
		unit=/etc/systemd/system/$PROG.service
		mkdir -p /etc/systemd/system
		if ! cmp -s "$unit_src" "$unit" 2>/dev/null; then
			cp "$unit_src" "$unit.new"
			chmod 0644 "$unit.new"
			mv -f "$unit.new" "$unit"
			changed=yes
		fi
		if command -v systemctl >/dev/null 2>&1; then
			systemctl enable "$PROG.service" >/dev/null 2>&1 || die "systemctl enable $PROG.service failed"
		else
			# What `systemctl enable` does for WantedBy=multi-user.target.
			mkdir -p /etc/systemd/system/multi-user.target.wants
			ln -sfn "$unit" "/etc/systemd/system/multi-user.target.wants/$PROG.service"
		fi
	fi
fi
getent_group() { grep -q "^$1:" /etc/group; }
getent_group citysense || die "the group citysense is missing after the install"

# ---- credentials
mkdir -p "$ETC"
creds_line='""'
if [ -n "$CREDS" ]; then
	if ! cmp -s "$CREDS" "$CREDS_DST" 2>/dev/null; then
		cp "$CREDS" "$CREDS_DST.new"
		chmod 0640 "$CREDS_DST.new"
		chown root:citysense "$CREDS_DST.new"
		mv -f "$CREDS_DST.new" "$CREDS_DST"
		say "credentials in $CREDS_DST"
		changed=yes
	fi
	creds_line=$CREDS_DST
fi

# ---- configuration
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "$MARKER"
	echo "# Run it again to change the collector, the id or the credentials; the"
	echo "# inputs block below is kept unless --inputs FILE replaces it. Check a"
	echo "# hand edit with: citysense-agent check -c $CONFIG"
	echo "agent:"
	echo "  id: $ID"
	echo "  data_dir: $DATA"
	echo "  http: \"$HTTP\""
	echo "log:"
	echo "  level: info"
	echo "  format: auto"
	if [ -n "$INPUTS" ]; then
		cat "$INPUTS"
	elif [ -f "$CONFIG" ] && head -n 1 "$CONFIG" | grep -qxF "$MARKER"; then
		# The inputs of the configuration this script wrote before, which
		# the installer may have edited since: from "inputs:" to "outputs:".
		sed -n '/^inputs:/,/^outputs:/p' "$CONFIG" | sed '$d'
	else
		echo "inputs:"
		echo "  # Line protocol from devices and loggers on this gateway (Telegraf,"
		echo "  # scripts): POST http://127.0.0.1:8186/write. Add MQTT, Modbus and"
		echo "  # CoAP inputs here; \`citysense-agent inputs\` prints a sample of each."
		echo "  - type: http"
		echo "    listen: 127.0.0.1:8186"
	fi
	echo "outputs:"
	echo "  - type: nats"
	echo "    id: nats"
	echo "    url: \"$COLLECTOR\""
	echo "    creds: $creds_line"
} >"$tmp"
if ! cmp -s "$tmp" "$CONFIG" 2>/dev/null; then
	if ! /usr/bin/$PROG check -c "$tmp" >/dev/null 2>"$tmp.err"; then
		echo "install.sh: the configuration would not be valid; $CONFIG is left as it was:" >&2
		sed "s#$tmp#$CONFIG#g" "$tmp.err" >&2
		rm -f "$tmp.err"
		exit 3
	fi
	rm -f "$tmp.err"
	# A configuration someone wrote by hand is kept once as .orig; the
	# package's untouched default is not worth keeping.
	pristine=no
	if command -v dpkg-query >/dev/null 2>&1 && [ -f "$CONFIG" ]; then
		sum=$(dpkg-query -W -f='${Conffiles}' "$PROG" 2>/dev/null | awk -v f="$CONFIG" '$1 == f { print $2 }')
		[ -n "$sum" ] && [ "$sum" = "$(md5sum <"$CONFIG" | cut -d' ' -f1)" ] && pristine=yes
	fi
	if [ -f "$CONFIG" ] && [ "$pristine" = no ] && ! head -n 1 "$CONFIG" | grep -qxF "$MARKER" && [ ! -f "$CONFIG.orig" ]; then
		cp -p "$CONFIG" "$CONFIG.orig"
		say "the previous $CONFIG is kept as $CONFIG.orig"
	fi
	chmod 0644 "$tmp"
	mv -f "$tmp" "$CONFIG"
	say "configuration written to $CONFIG"
	changed=yes
fi

# ---- (re)start
if [ "$START" = yes ]; then
	if [ "$systemd_running" = yes ]; then
		systemctl daemon-reload
		if [ "$changed" = yes ]; then
			systemctl restart "$PROG.service"
		else
			systemctl start "$PROG.service"
		fi
	elif [ "$openwrt" = yes ]; then
		if [ "$changed" = yes ]; then "/etc/init.d/$PROG" restart; else "/etc/init.d/$PROG" start; fi
	else
		say "no running systemd or procd: $PROG starts at the next boot"
	fi
fi
version=$(/usr/bin/$PROG version | head -n 1)
if [ "$changed" = yes ]; then
	say "done: $version ($ARCH, ${DEB:+package}${BIN:+binary}); id $ID, collector $COLLECTOR"
else
	say "nothing to change: $version ($ARCH) is installed and configured as asked"
fi
