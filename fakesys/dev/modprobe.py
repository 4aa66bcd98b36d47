"""``modprobe`` inside ``fakesys run``: the daemon's module loader.

:func:`modprobe` answers the control command ``modprobe ARGS...`` that the
``modprobe`` on PATH inside ``fakesys run`` sends (fakesys/data/bin/modprobe),
and answers it as kmod's modprobe would, messages and exit status included:

* the first name is the module and the words after it are its options,
  unless ``-a`` (every name a module) or ``-r`` (every name removed);
* ``nfit_test`` is loaded from the running topology's ``module =
  "nfit_test"`` buses, or from the shipped nfit_test topology, and removed
  (EBUSY while one of its regions is enabled: "is in use");
* a module of the emulated kernel (kernel/config.py MODULES) is there
  already: loading it does nothing, and neither does removing it (the
  model cannot unload its subsystems yet);
* any other name is not found: ``FATAL: Module X not found in directory
  /lib/modules/RELEASE`` (``-r``: ``not found.``), exit 1, so a test that
  needs a module the fake does not have (cxl_test) skips instead of
  passing on nothing.  With ``-a`` a missing module is a WARNING and the
  next name is tried; the exit status is 1 still.  ``-q`` silences the
  messages (the shim drops them), never the status.
"""

from __future__ import annotations

import copy
import errno
import os
from dataclasses import dataclass, field

from fakesys import shipped_topology
from fakesys.errors import Errno
from fakesys.kernel import config
from fakesys.platform import nfit_test
from fakesys.platform.topology import Topology, load

#: the machine ``modprobe nfit_test`` adds when the running topology names none
NFIT_TEST_TOPOLOGY = shipped_topology("nfit_test")

# kmod options that take a value (the next word, or after "=")
_VALUED = {"-C", "--config", "-d", "--dirname", "-S", "--set-version", "-w", "--wait",
           "-o", "--syslog-only"}


@dataclass
class Request:
    """A modprobe command line as kmod reads it."""

    remove: bool = False
    all: bool = False
    names: list[str] = field(default_factory=list)


def parse(words: list[str]) -> Request:
    req = Request()
    positional: list[str] = []
    it = iter(words)
    for w in it:
        if w in ("-r", "--remove"):
            req.remove = True
        elif w in ("-a", "--all"):
            req.all = True
        elif w in _VALUED:
            next(it, None)
        elif w == "--":
            positional += list(it)
        elif w.startswith("-") and len(w) > 1:
            if not w.startswith("--") and "r" in w[1:]:
                req.remove = True
            if not w.startswith("--") and "a" in w[1:]:
                req.all = True
        else:
            positional.append(w)
    req.names = positional if req.remove or req.all else positional[:1]
    return req


def modprobe(machine, words: list[str]) -> tuple[int, str]:
    """``modprobe ARGS``: (exit status, messages for stderr)."""
    req = parse(words)
    if not req.names:
        return 1, "modprobe: ERROR: missing parameters. See -h.\n"
    status, out = 0, ""
    for name in req.names:
        rc, msg, fatal = _one(machine, name, req.remove)
        if rc:
            status = 1
            if fatal and not req.all:
                return 1, out + f"modprobe: FATAL: {msg}\n"
            out += f"modprobe: {'WARNING' if fatal else 'ERROR'}: {msg}\n"
    return status, out


def _one(machine, name: str, remove: bool) -> tuple[int, str, bool]:
    """One module: (status, message, whether kmod's message is FATAL)."""
    mod = name.replace("-", "_")
    if mod == nfit_test.MODULE:
        try:
            if remove:
                nfit_test.unload(machine)
            else:
                nfit_test.load(machine, _nfit_test_topology(machine))
        except Errno as e:
            if e.errno == errno.EBUSY:
                return 1, f"Module {name} is in use.", True
            return 1, f"could not insert '{mod}': {os.strerror(e.errno)}", False
        return 0, "", False
    if mod in config.MODULES:
        return 0, "", False
    if remove:
        return 1, f"Module {name} not found.", True
    return 1, f"Module {name} not found in directory /lib/modules/{os.uname().release}", True


def _nfit_test_topology(machine) -> Topology:
    """The nfit_test buses to load: the running topology's, else the shipped ones."""
    topo = machine.topology
    if any(getattr(b, "module", "") == nfit_test.MODULE for b in topo.buses):
        return _only_module(topo, nfit_test.MODULE)
    return _only_module(load(NFIT_TEST_TOPOLOGY), nfit_test.MODULE)


def _only_module(topo: Topology, module: str) -> Topology:
    """A copy of ``topo`` holding only the buses ``module`` provides."""
    out = copy.copy(topo)
    out.buses = [b for b in topo.buses if getattr(b, "module", "") == module]
    return out
