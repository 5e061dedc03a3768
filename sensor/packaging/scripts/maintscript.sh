# Endura Runtime Sensor package scripts (POSIX sh). The build appends one line that calls
# `endura_hook <family> <hook> "$@"`, so every format shares one implementation:
#   install  -> enable the service (not started: review /etc/endura first, then start it)
#   upgrade  -> reload units; restart a running sensor only if the new config validates
#   remove   -> stop and disable (an upgrade is not a removal)
#   purge    -> delete /etc/endura, /var/lib/endura, /var/log/endura (deb purge, tarball --purge)
# Every command that may fail on a host says what happens then (`|| :`, an if); anything else that
# fails stops the script (Debian policy 10.4). Every package manager runs its scripts with /usr/bin in
# PATH, so commands are named without a path (Debian policy 6.1).
set -e
SERVICE=endura-sensor
STATE_DIRS="/var/lib/endura /var/log/endura"

have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }
have_openrc() { [ -d /run/openrc ] && command -v rc-service >/dev/null 2>&1; }
say() { echo "endura-sensor: $*"; }

make_state_dirs() {
	for d in $STATE_DIRS; do
		mkdir -p "$d" && chmod 0750 "$d"
	done
}

on_install() {
	make_state_dirs
	if have_systemd; then
		systemctl daemon-reload || :
		systemctl enable "$SERVICE.service" >/dev/null 2>&1 || :
	elif command -v rc-update >/dev/null 2>&1 && [ -x /etc/init.d/$SERVICE ]; then
		rc-update add "$SERVICE" default >/dev/null 2>&1 || :
	fi
	say "installed and enabled, not started. Review /etc/endura/sensor.conf and /etc/endura/policies,"
	say "run 'endura-sensor check' to see which enforcement tier this kernel supports, then start the service."
}

on_upgrade() {
	make_state_dirs
	if have_systemd; then
		systemctl daemon-reload || :
		if systemctl is-active --quiet "$SERVICE.service"; then
			if endura-sensor check-config; then
				systemctl restart "$SERVICE.service" || say "restart failed; see 'journalctl -u $SERVICE'"
			else
				say "the configuration does not validate: the running sensor was NOT restarted and keeps enforcing; fix it and restart"
			fi
		fi
	elif have_openrc && rc-service "$SERVICE" status >/dev/null 2>&1; then
		if endura-sensor check-config; then
			rc-service "$SERVICE" restart || :
		else
			say "the configuration does not validate: the running sensor was NOT restarted; fix it and restart"
		fi
	fi
}

on_remove() {
	if have_systemd; then
		systemctl disable --now "$SERVICE.service" >/dev/null 2>&1 || :
	elif command -v rc-update >/dev/null 2>&1; then
		rc-service "$SERVICE" stop >/dev/null 2>&1 || :
		rc-update del "$SERVICE" default >/dev/null 2>&1 || :
	fi
	# no sensor will take over what a stopped (fail_closed) or crashed one left attached: detach it
	endura-sensor release >/dev/null 2>&1 || :
}

on_removed() {
	if have_systemd; then
		systemctl daemon-reload || :
	fi
}

on_purge() {
	rm -rf /etc/endura /var/lib/endura /var/log/endura
}

# Each format calls its scripts with different arguments; map them to the actions above.
endura_hook() {
	family=$1 hook=$2
	shift 2
	case "$family:$hook" in
	# deb: postinst configure [old-version]; prerm remove|upgrade; postrm remove|purge|upgrade
	deb:postinstall) [ "$1" = configure ] || return 0; if [ -n "${2:-}" ]; then on_upgrade; else on_install; fi ;;
	deb:preremove) [ "$1" = remove ] && on_remove ;;
	deb:postremove) case "$1" in remove) on_removed ;; purge) on_removed; on_purge ;; esac ;;
	# rpm: $1 is the number of installed instances after the operation (1 install, 2 upgrade, 0 erase)
	rpm:postinstall) if [ "${1:-1}" -gt 1 ]; then on_upgrade; else on_install; fi ;;
	rpm:preremove) [ "${1:-0}" -eq 0 ] && on_remove ;;
	rpm:postremove) [ "${1:-0}" -eq 0 ] && on_removed ;;
	# apk and pacman have distinct upgrade hooks
	apk:postinstall | arch:postinstall) on_install ;;
	apk:postupgrade | arch:postupgrade) on_upgrade ;;
	apk:preremove | arch:preremove) on_remove ;;
	apk:postremove | arch:postremove) on_removed ;;
	*) say "unknown hook $family:$hook" >&2; return 1 ;;
	esac
	return 0
}
