"""The platform layer: the kernel takes descriptors (that it never imports
the platform back is tests/test_layers.py's); the descriptors carry what
the topology says, with the stores the machine made, and label
pre-provisioning writes the kernel's own label format."""

from __future__ import annotations

from fakesys.kernel.acpi.nfit_table import Nfit, NfitDimm, NfitSpa
from fakesys.kernel.nvdimm.dimm import LsaIo
from fakesys.kernel.nvdimm.label import LabelArea
from fakesys.media import Memory
from fakesys.platform.nfit import nfit_table, preprovision_labels
from fakesys.platform.topology import parse


TOPOLOGY = """
kernel = "6.1"
[[bus]]
[[bus.dimm]]
name = "b"
handle = 0x101
size = "16M"
labels = "v1.2"
serial = 7
[[bus.dimm]]
name = "a"
handle = 0x1
size = "16M"
[[bus.region]]
spa = 0x100000000
size = "32M"
dimms = ["a", "b"]
[[bus.region]]
spa = 0x200000000
size = "8M"
dimms = []
volatile = true
"""


def test_nfit_table_from_topology():
    spec = parse(TOPOLOGY).buses[0]
    made: list[str] = []

    def dimm_stores(d):
        made.append(d.name)
        return Memory(d.label_size), Memory(d.size)

    def region_store(name, size):
        made.append(name)
        return Memory(size)
    nfit = nfit_table(spec, dimm_stores, region_store)
    assert isinstance(nfit, Nfit) and all(isinstance(d, NfitDimm) for d in nfit.dimms)
    assert made == ["a", "b", "spa-200000000.pmem"]        # DIMMs by handle, then DIMM-less ranges
    assert [d.name for d in nfit.dimms] == ["a", "b"]
    assert nfit.dimms[1].serial == 7 and nfit.dimms[1].lsa.size == 128 << 10
    first, second = nfit.regions
    assert isinstance(first, NfitSpa) and first.media is None and first.dpa == [0, 0]
    assert second.volatile and second.media.size == 8 << 20


def test_preprovision_labels_writes_an_index_where_asked():
    spec = parse(TOPOLOGY).buses[0]
    nfit = nfit_table(spec, lambda d: (Memory(d.label_size), Memory(d.size)), lambda n, s: Memory(s))
    preprovision_labels(spec, nfit)
    a, b = nfit.dimms
    assert not LabelArea(LsaIo(a.lsa)).validate()          # labels = "blank"
    assert LabelArea(LsaIo(b.lsa)).validate()               # labels = "v1.2": init-labels ran
    before = b.lsa.read(0, b.lsa.size)
    preprovision_labels(spec, nfit)                         # a valid index is left alone
    assert b.lsa.read(0, b.lsa.size) == before
