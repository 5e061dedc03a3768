#!/bin/busybox sh
# /init of the kernel test VMs (vmtest): mount what the sensor needs, run the guest driver, reboot.
# The driver writes its results as JSON lines to /dev/ttyS1; this script's output goes to the console.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /run /tmp /var/log/endura /var/lib/endura
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -e /bin/mount ] || $bb --install -s 2>/dev/null  # the base image normally has the links
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t tmpfs tmpfs /dev/shm 2>/dev/null
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up  # the connect probes use 127.0.0.1
echo "vmtest: init ready after $(cut -d' ' -f1 /proc/uptime)s"
python3 /vmtest/guest.py
echo "vmtest: guest driver exited with $? after $(cut -d' ' -f1 /proc/uptime)s"
sync
reboot -f
