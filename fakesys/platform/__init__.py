"""The platform: what firmware, the boot loader and the hardware are to the
emulated kernel.

A topology (:mod:`.topology`) describes a machine; :mod:`.machine` gives it
media stores and boots the kernel; the providers turn the topology's specs
into the descriptors a real kernel gets from firmware (an NFIT, e820
ranges, a device-tree node, a virtio config space, soft-reserved ranges,
the boot memory map with SRAT/SLIT/HMAT) and hand them to the kernel's
entry points.  What user space would have done before the emulated boot
(``ndctl init-labels`` on a topology's DIMMs) happens here too.

The arrow points one way: the platform imports the kernel; ``kernel/``
imports nothing from here.
"""
