"""Kernel test VMs: boot each target's kernel under qemu with the built package and prove enforcement.

`python3 -m vmtest debian-12` (or `all`, or `--kernel PATH`); `nox -s vmtest -- ...` calls `main()`.

- `plan`: targets -> jobs (kernel x boot), sharding, the kernel command line and the qemu argv (pure).
- `kernels`: fetch a target's kernel with apt through a private APT_CONFIG, verify, cache.
- `rootfs`: the guest userspace (mmdebstrap --variant=extract) as a cached initramfs, plus the
  per-run overlay (the package's files, the guest driver) appended as a second cpio.
- `cpio`: a small newc writer (no root needed, deterministic).
- `guest`: runs inside the VM (stdlib only, Python >= 3.9): check + scenarios, results on ttyS1.
- `results`: parse the guest's JSON lines, judge them, JUnit XML and the summary table (pure).
- `runner`: boot the VMs (-j N), timeouts and console tails; `cli`: the command line.
"""
