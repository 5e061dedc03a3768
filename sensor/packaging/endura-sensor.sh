#!/bin/sh
# Endura Runtime Sensor launcher: runs the sensor with this host's own Python >= 3.9
# (python3 where it is new enough, else python3.13 ... python3.9, e.g. RHEL 8's python3.11).
LIBDIR=/usr/lib/endura-sensor
for py in ${ENDURA_PYTHON:-} python3 python3.13 python3.12 python3.11 python3.10 python3.9; do
	command -v "$py" >/dev/null 2>&1 || continue
	if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
		exec "$py" -I -B -c "import sys; sys.path.insert(0, '$LIBDIR'); from endura_sensor.cli import main; sys.exit(main())" "$@"
	fi
done
echo "endura-sensor: no Python >= 3.9 found; install your distribution's python3.11 (RHEL 8) or python311 (SLES 15) package, or set ENDURA_PYTHON" >&2
exit 127
