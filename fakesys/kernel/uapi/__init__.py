"""The emulated kernel's user-space ABI headers (include/uapi/linux/).

Numbers user space and the kernel agree on, defined once here so every
module that speaks them (the ioctl layer, the DIMM driver, the NFIT and
nfit_test providers) uses the same definition.
"""
