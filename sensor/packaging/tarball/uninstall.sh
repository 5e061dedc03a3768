#!/bin/sh
# Remove Endura Runtime Sensor installed by install.sh.
#   ./uninstall.sh [--root DIR] [--purge]
# Keeps /etc/endura, /var/lib/endura and /var/log/endura unless --purge is given.
set -eu
root=/
purge=no
while [ $# -gt 0 ]; do
	case "$1" in
	--root) root=${2:?--root needs a directory}; shift 2 ;;
	--root=*) root=${1#--root=}; shift ;;
	--purge) purge=yes; shift ;;
	-h | --help) sed -n '2,4p' "$0"; exit 0 ;;
	*) echo "uninstall.sh: unknown option '$1'; use --root DIR or --purge" >&2; exit 2 ;;
	esac
done
root=${root%/}
record="$root/usr/lib/endura-sensor/installed-files"
[ -f "$record" ] || { echo "uninstall.sh: nothing to remove: $record is missing (not installed by install.sh into '${root:-/}')" >&2; exit 1; }

if [ "$root" = "" ]; then
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now endura-sensor.service 2>/dev/null || :
		systemctl daemon-reload || :
	elif command -v rc-update >/dev/null 2>&1; then
		rc-service endura-sensor stop 2>/dev/null || :
		rc-update del endura-sensor default 2>/dev/null || :
	fi
	# no sensor will take over what a stopped (fail_closed) or crashed one left attached: detach it
	/usr/bin/endura-sensor release >/dev/null 2>&1 || :
fi
while read -r f; do
	rm -f "$root$f"
done < "$record"
rm -f "$record"
rm -rf "$root/usr/lib/endura-sensor" "$root/usr/share/doc/endura-sensor"
if [ "$purge" = yes ]; then
	rm -rf "$root/etc/endura" "$root/var/lib/endura" "$root/var/log/endura"
	echo "Endura Runtime Sensor removed with its configuration, state and logs."
else
	echo "Endura Runtime Sensor removed; kept /etc/endura, /var/lib/endura and /var/log/endura (use --purge to delete them)."
fi
