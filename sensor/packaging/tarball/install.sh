#!/bin/sh
# Install Endura Runtime Sensor from this tarball on any systemd or OpenRC host.
#   ./install.sh [--root DIR] [--no-enable]
# --root installs into DIR (an image or chroot) without touching the running system.
# An existing /etc/endura/sensor.conf is kept; the shipped one is written beside it as sensor.conf.new.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=/
enable=yes
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--no-enable) enable=no; shift ;;
	-h | --help) sed -n '2,6p' "$0"; exit 0 ;;
	*) echo "install.sh: unknown option '$1'; use --root DIR or --no-enable" >&2; exit 2 ;;
	esac
done
[ -d "$root" ] || { echo "install.sh: root '$root' is not a directory; create it or omit --root" >&2; exit 2; }
[ "$(id -u)" = 0 ] || [ "$root" != / ] || { echo "install.sh: run as root (or use --root DIR)" >&2; exit 1; }
root=${root%/}
files="$here/files"
record="$root/usr/lib/endura-sensor/installed-files"

if [ -d "$root/run/openrc" ] || { [ ! -d "$root/run/systemd/system" ] && [ -x "$root/sbin/openrc-run" ]; }; then
	init=openrc
else
	init=systemd
fi

mkdir -p "$root/usr/lib/endura-sensor"
tmp_record="$record.tmp.$$"
: > "$tmp_record"
(cd "$files" && find . -type d) | sort | while read -r d; do
	d=${d#.}
	[ -n "$d" ] || continue
	mkdir -p "$root$d"
done
(cd "$files" && find . ! -type d) | sort | while read -r f; do
	f=${f#.}
	case "$f:$init" in
	/etc/init.d/*:systemd | /usr/lib/systemd/*:openrc) continue ;;
	esac
	if [ "$f" = /etc/endura/sensor.conf ] && [ -e "$root$f" ]; then
		if ! cmp -s "$files$f" "$root$f"; then
			cp -p "$files$f" "$root$f.new"
			echo "install.sh: kept your $f; the shipped version is $f.new"
		fi
		continue
	fi
	cp -p "$files$f" "$root$f.endura-tmp"
	mv -f "$root$f.endura-tmp" "$root$f"
	[ "$f" = /etc/endura/sensor.conf ] || echo "$f" >> "$tmp_record"
done
chmod 0750 "$root/etc/endura" "$root/etc/endura/policies" "$root/var/lib/endura" "$root/var/log/endura"
mv -f "$tmp_record" "$record"

if [ "$root" = "" ] && [ "$enable" = yes ]; then
	if [ "$init" = systemd ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl enable endura-sensor.service
	elif [ "$init" = openrc ]; then
		rc-update add endura-sensor default
	fi
fi
# An upgrade over a running sensor restarts it, like the packages do: only when the new configuration
# validates; the stopping sensor hands its programs over to the new one (no gap in enforcement).
if [ "$root" = "" ]; then
	running=no
	if [ "$init" = systemd ] && [ -d /run/systemd/system ]; then
		systemctl daemon-reload
		systemctl is-active --quiet endura-sensor.service && running=yes
	elif [ "$init" = openrc ] && rc-service endura-sensor status >/dev/null 2>&1; then
		running=yes
	fi
	if [ "$running" = yes ]; then
		if /usr/bin/endura-sensor check-config; then
			if [ "$init" = systemd ]; then systemctl restart endura-sensor.service; else rc-service endura-sensor restart; fi
			echo "install.sh: restarted the running sensor with the new version"
		else
			echo "install.sh: the configuration does not validate: the running sensor was NOT restarted and keeps enforcing; fix it and restart" >&2
		fi
	fi
fi
echo "Endura Runtime Sensor $(cat "$here/VERSION") installed into ${root:-/} ($init)."
echo "Review /etc/endura/sensor.conf and /etc/endura/policies, run 'endura-sensor check', then start the service."
