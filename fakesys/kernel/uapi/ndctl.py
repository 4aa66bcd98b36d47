"""include/uapi/linux/ndctl.h: the libnvdimm ioctl ABI.

Bus commands and DIMM commands are numbered separately (ND_CMD_ARS_CAP and
ND_CMD_SMART are both 1); which table a number belongs to depends on the
device the ioctl was made on.
"""

from __future__ import annotations

ND_IOCTL = 0x4E  # 'N'

# bus commands
ND_CMD_IMPLEMENTED = 0
ND_CMD_ARS_CAP = 1
ND_CMD_ARS_START = 2
ND_CMD_ARS_STATUS = 3
ND_CMD_CLEAR_ERROR = 4

# DIMM commands
ND_CMD_SMART = 1
ND_CMD_SMART_THRESHOLD = 2
ND_CMD_DIMM_FLAGS = 3
ND_CMD_GET_CONFIG_SIZE = 4
ND_CMD_GET_CONFIG_DATA = 5
ND_CMD_SET_CONFIG_DATA = 6
ND_CMD_VENDOR_EFFECT_LOG_SIZE = 7
ND_CMD_VENDOR_EFFECT_LOG = 8
ND_CMD_VENDOR = 9
ND_CMD_CALL = 10

ND_IOCTL_MAX_BUFLEN = 4 << 20
ND_CMD_MAX_ENVELOPE = 256
ND_CMD_PKG_SIZE = 64            # struct nd_cmd_pkg without the payload

NVDIMM_FAMILY_INTEL = 0
NVDIMM_FAMILY_MAX = 5           # NVDIMM_FAMILY_PAPR
NVDIMM_BUS_FAMILY_NFIT = 0
NVDIMM_BUS_FAMILY_MAX = 1       # NVDIMM_BUS_FAMILY_INTEL
NVDIMM_CMD_MAX = 31             # highest _DSM function acpi_nfit_ctl passes
