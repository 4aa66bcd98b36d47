"""The kernel's string parsers: what a store accepts and its errno otherwise."""

from __future__ import annotations

import errno

import pytest

from fakesys.errors import Errno
from fakesys.kernel.nvdimm.namespace import parse_uuid
from fakesys.kernel.parse import kstrtobool, kstrtoull


@pytest.mark.parametrize("text,value", [("0x10000000\n", 0x10000000), ("4096", 4096), ("010", 8),
                                        ("+5\n", 5), ("0", 0)])
def test_kstrtoull(text, value):
    assert kstrtoull(text, 0) == value


@pytest.mark.parametrize("text,err", [("", errno.EINVAL), (" 1", errno.EINVAL), ("1 \n", errno.EINVAL),
                                      ("-1", errno.EINVAL), ("0x", errno.EINVAL),
                                      ("0x1" + "0" * 16, errno.ERANGE), ("1\n\n", errno.EINVAL)])
def test_kstrtoull_errors(text, err):
    with pytest.raises(Errno) as e:
        kstrtoull(text, 0)
    assert e.value.errno == err


def test_kstrtobool():
    assert kstrtobool("1") and kstrtobool("Yes") and kstrtobool("on")
    assert not kstrtobool("0") and not kstrtobool("off") and not kstrtobool("N\n")
    for bad in ("", "2", "o", "x"):
        with pytest.raises(Errno):
            kstrtobool(bad)


def test_uuid_parse_like_nd_uuid_parse():
    u = "6bfa5b2f-3b0c-4b93-9d3b-44e8b5d7a1a0"
    assert str(parse_uuid(u + "\n")) == u
    assert str(parse_uuid(u.replace("-", ""))) == u
    assert str(parse_uuid(u.replace("-", ":"))) == u
    assert str(parse_uuid(u + "trailing junk")) == u  # the kernel stops after 16 bytes
    for bad in ("", "6bfa5b2f", "zz" * 16, u[:-1]):
        with pytest.raises(Errno) as e:
            parse_uuid(bad)
        assert e.value.errno == errno.EINVAL
