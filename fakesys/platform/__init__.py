"""The platform: what firmware, the boot loader and the hardware are to the
emulated kernel.

A topology (:mod:`.topology`) describes a machine; :mod:`.machine` gives it
media stores and boots the kernel; the providers turn the topology's specs
into the descriptors a real kernel gets from firmware (an NFIT, e820
ranges, a device-tree node, a virtio config space, soft-reserved ranges,
the boot memory map with SRAT/SLIT/HMAT) and hand them to the kernel's
entry points.  What user space would have done before the emulated boot
(``ndctl init-labels`` on a topology's DIMMs) happens here too.

Modules: ``topology`` (TOML -> specs), ``machine`` (boot, provider
tables, reboot), ``stores`` (media stores and the state directory),
``nfit`` and ``nfit_test`` (NFIT tables, at boot and by modprobe),
``pmem`` (e820, virtio-pmem, of_pmem), ``labels`` (init-labels before
boot).

The arrow points one way: the platform imports the kernel; ``kernel/``
imports nothing from here (tests/test_platform_layer.py keeps it so).
"""
