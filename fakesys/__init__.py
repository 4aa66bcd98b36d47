"""fakesys: the Linux libnvdimm / device-DAX sysfs ABI served over FUSE."""
