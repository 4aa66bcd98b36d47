"""fakesys: the Linux libnvdimm / device-DAX sysfs ABI served over FUSE."""

import os as _os

#: the built-in default topology (here, so the CLI need not import the parser to name it)
DEFAULT_TOPOLOGY = _os.path.join(_os.path.dirname(__file__), "data", "default.toml")
