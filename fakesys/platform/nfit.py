"""The NFIT of a topology's ``nfit`` bus, as firmware would publish it.

:func:`nfit_table` turns a :class:`BusSpec` into the kernel's
:class:`Nfit`, with a store for every DIMM's label area and DPA space and
for every SPA range without DIMMs; :func:`acpi_nfit` is the boot-time
provider: it runs the topology's label pre-provisioning, then hands the
table to acpi_nfit_init().
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

from fakesys.kernel.acpi.nfit import nfit_register
from fakesys.kernel.acpi.nfit_table import Nfit, NfitDimm, NfitSpa
from fakesys.kernel.kernel import Kernel
from fakesys.platform.labels import init_labels
from fakesys.platform.stores import Stores
from fakesys.platform.topology import BusSpec, DimmSpec

DimmStores = Callable[[DimmSpec], tuple]        # -> (label store or None, media store)
RegionStore = Callable[[str, int], object]      # (name, size) -> media store


def _copy(cls, spec, **given):
    """A ``cls`` with ``given`` and every other field of ``cls`` that ``spec`` has."""
    names = {f.name for f in fields(cls)} - given.keys()
    return cls(**{n: getattr(spec, n) for n in names if hasattr(spec, n)}, **given)


def nfit_table(spec: BusSpec, dimm_stores: DimmStores, region_store: RegionStore) -> Nfit:
    """The NFIT of bus ``spec``; the stores are made in the order the
    kernel used to ask for them (DIMMs by handle, then DIMM-less ranges)."""
    dimms = []
    for dspec in sorted(spec.dimms, key=lambda d: d.handle):
        lsa, media = dimm_stores(dspec)
        dimms.append(_copy(NfitDimm, dspec, lsa=lsa, media=media))
    regions = [_copy(NfitSpa, rspec, media=None if rspec.dimms
                     else region_store(f"spa-{rspec.spa:x}.pmem", rspec.size))
               for rspec in spec.regions]
    return _copy(Nfit, spec, dimms=dimms, regions=regions)


def preprovision_labels(spec: BusSpec, nfit: Nfit) -> None:
    """What user space did to these DIMMs before this boot: init-labels
    where the topology asks for a label version (platform.labels)."""
    labels = {d.name: d.labels for d in spec.dimms}
    for dimm in nfit.dimms:
        init_labels(dimm.lsa, labels[dimm.name])


def acpi_nfit(kernel: Kernel, stores: Stores, spec: BusSpec) -> None:
    """Provider of ``type = "nfit"`` buses at boot; a bus that belongs to a
    module (nfit_test) comes with ``modprobe``, not here."""
    if spec.module:
        return
    nfit = nfit_table(spec, stores.dimm_stores, stores.store)
    preprovision_labels(spec, nfit)
    nfit_register(kernel, nfit)
