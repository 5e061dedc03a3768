"""eBPF programs (CO-RE) and their build: `bpf.build.build()` turns `bpf/*.bpf.c` into `.bpf.o` per arch."""
