"""The kernel caches what session.py lets it cache, and nothing stale.

A small tree is served in-process, and the server's handlers are counted:
a symlink resolved twice is asked for once, a directory listed twice is
read once, closing a cached attribute reaches no handler and leaves no
handle behind; a change to a listing or a link target shows at once; a
poll on a cached attribute still sees a notify.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select

import pytest
import trio

from conftest import needs_root
from fakesys.errors import Errno
from fakesys.fuse import front, session
from fakesys.fuse.server import Server, mount_options, serve
from fakesys.sysfs.tree import Dir, File, Link, Tree

pytestmark = needs_root


def _tree() -> Tree:
    tree = Tree()
    bus = tree.root.mkdir("bus")
    dev = bus.mkdir("dev0")
    dev.add(File("state", 0o644, lambda: "idle\n", lambda data: None))
    dev.add(File("size", 0o444, lambda: "4096\n"))
    tree.root.mkdir("drivers").mkdir("drv")
    dev.add(Link("driver", tree.root.walk("drivers/drv")))
    return tree


def _counting(server: Server) -> collections.Counter:
    """Count the handler calls that reach the server."""
    calls: collections.Counter = collections.Counter()
    for op in ("readlink", "readdir", "open", "release"):
        handler = getattr(server, op)

        async def counted(*args, _op=op, _handler=handler):
            calls[_op] += 1
            return await _handler(*args)
        setattr(server, op, counted)
    return calls


async def _settled(done) -> None:
    """Wait (up to 5 s) for ``done()``: a close returns before its RELEASE is served."""
    with trio.move_on_after(5):
        while not done():
            await trio.sleep(0.01)


def _read(path) -> str:
    with open(path) as f:
        return f.read()


async def _serving(nursery, tree: Tree, mnt) -> Server:
    server = Server(tree, uid=os.getuid(), gid=os.getgid())
    mnt.mkdir()
    await nursery.start(serve, server, str(mnt), mount_options("sessiontest"))
    return server


async def test_cached_links_listings_and_closes(tmp_path):
    tree = _tree()
    mnt = tmp_path / "mnt"
    async with trio.open_nursery() as nursery:
        server = await _serving(nursery, tree, mnt)
        calls = _counting(server)
        dev = mnt / "bus/dev0"

        def twice() -> None:
            for _ in range(2):
                assert os.readlink(dev / "driver") == "../../drivers/drv"
                assert sorted(os.listdir(dev)) == ["driver", "size", "state"]
            for _ in range(10):
                assert _read(dev / "size") == "4096\n"
        await trio.to_thread.run_sync(twice)
        assert calls["readlink"] == 1
        assert calls["readdir"] in (1, 2)  # one listing (and its end)
        listing_reads = calls["readdir"]
        # the cached attribute's opens and closes never reached a handler,
        # nor pyfuse3: the front answered them (and the directories' opens)
        assert calls["open"] == calls["release"] == 0
        assert server.front_counts()["answered"] >= 20
        assert not server._open and server.stateless(tree.root.walk("bus/dev0/size").ino)

        # changes: a new entry, a link retargeted in place, a written attribute
        tree.root.walk("drivers").mkdir("other")
        tree.root.walk("bus/dev0").add(File("new", 0o444, lambda: "1\n"))
        tree.root.walk("bus/dev0/driver").target = tree.root.walk("drivers/other")
        await server.changed()

        def changed() -> None:
            assert sorted(os.listdir(dev)) == ["driver", "new", "size", "state"]
            assert os.readlink(dev / "driver") == "../../drivers/other"
            with open(dev / "state", "w") as f:
                f.write("busy\n")
        await trio.to_thread.run_sync(changed)
        assert calls["readdir"] > listing_reads and calls["readlink"] == 2
        # the write had a handle with state: released through the handler
        await _settled(lambda: calls["release"] == 1)
        assert calls["open"] == calls["release"] == 1 and not server._open

        # a written attribute is read directly from now on: the front opens
        # it and answers its READs from the content rendered last
        answered = server.front_counts()["answered"]

        def read_written() -> None:
            for _ in range(5):
                assert _read(dev / "state") == "idle\n"
        await trio.to_thread.run_sync(read_written)
        assert calls["open"] == 1
        assert server.front_counts()["answered"] >= answered + 14  # 5 opens, 4+ reads, 5 closes
        nursery.cancel_scope.cancel()


async def test_a_long_listing_resumes_where_it_stopped(tmp_path):
    """Directory handles hold no state: a listing longer than one reply
    resumes at the next entry's position (hash and rank, as kernfs does)."""
    tree = _tree()
    many = tree.root.mkdir("many")
    names = [f"attr{i:04d}" for i in range(600)]
    for name in names:
        many.add(File(name, 0o444, lambda: "0\n"))
    mnt = tmp_path / "mnt"
    async with trio.open_nursery() as nursery:
        server = await _serving(nursery, tree, mnt)
        calls = _counting(server)
        listed = await trio.to_thread.run_sync(os.listdir, mnt / "many")
        assert sorted(listed) == names       # each once
        assert calls["readdir"] > 2          # several replies
        nursery.cancel_scope.cancel()


async def test_poll_on_a_cached_attribute(tmp_path):
    tree = _tree()
    mnt = tmp_path / "mnt"
    size = tree.root.walk("bus/dev0/size")
    async with trio.open_nursery() as nursery:
        server = await _serving(nursery, tree, mnt)
        fd = await trio.to_thread.run_sync(os.open, mnt / "bus/dev0/size", os.O_RDONLY)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI)
            assert await trio.to_thread.run_sync(poller.poll, 0) == []
            assert not server.stateless(size.ino)  # the poll gave the handle state

            # sysfs_notify() wakes a poller that is waiting already
            waiting = trio.to_thread.run_sync(poller.poll, 5000)
            async with trio.open_nursery() as inner:
                result: list = []

                async def wait() -> None:
                    result.extend(await waiting)
                inner.start_soon(wait)
                await trio.sleep(0.2)
                size.notify()
                await server.changed()
            assert result and result[0][1] & select.POLLPRI
        finally:
            await trio.to_thread.run_sync(os.close, fd)
        await _settled(lambda: server.stateless(size.ino))
        assert server.stateless(size.ino) and not server._open
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("without", ["the session", "the front"])
async def test_what_serves_without(tmp_path, monkeypatch, caplog, without):
    """Where pyfuse3's session cannot be found, pyfuse3's own operations
    serve everything (a READLINK and an OPEN and RELEASE each time); where
    front.c is not built, or libfuse lacks custom I/O (before 3.14: Ubuntu
    22.04), session.py's callbacks answer the cached opens and closes, and
    the kernel keeps the link target, as before the front."""
    caplog.set_level(logging.INFO, logger="fakesys.fuse")
    if without == "the session":
        def missing(path):
            raise LookupError("no symbol (stripped?)")
        monkeypatch.setattr(session, "_pointers", missing)
        handled, readlinks, said = 3, 3, "left as pyfuse3 made it: no symbol"
    else:
        monkeypatch.setattr(front, "library_path", lambda: None)
        handled, readlinks, said = 0, 1, "served without a front: front.c was not built"
    tree = _tree()
    mnt = tmp_path / "mnt"
    async with trio.open_nursery() as nursery:
        server = await _serving(nursery, tree, mnt)
        calls = _counting(server)

        def use() -> None:
            for _ in range(3):
                assert os.readlink(mnt / "bus/dev0/driver") == "../../drivers/drv"
                assert _read(mnt / "bus/dev0/size") == "4096\n"
                assert sorted(os.listdir(mnt / "bus/dev0")) == ["driver", "size", "state"]
        await trio.to_thread.run_sync(use)
        await _settled(lambda: calls["release"] == handled)
        assert calls["open"] == calls["release"] == handled and calls["readlink"] == readlinks
        assert server.front_counts() is None and not server._open
        nursery.cancel_scope.cancel()
    assert said in caplog.text


def test_symbols_of_this_pyfuse3():
    """The build scripts/bootstrap installs keeps its symbol table."""
    import pyfuse3
    symbols = session._static_symbols(pyfuse3.__file__, ("__pyx_v_7pyfuse3_session",))
    assert symbols["__pyx_v_7pyfuse3_session"] > 0
    with pytest.raises(LookupError):
        session._static_symbols(pyfuse3.__file__, ("no_such_symbol",))


def test_the_front_is_built():
    """scripts/bootstrap builds front.c (setup.py): without it every open and
    close is a round trip through pyfuse3."""
    assert front.library_path() is not None


class _Table:
    """What a front would hold: the entries and contents the server publishes."""

    def __init__(self) -> None:
        self.entries: dict[int, int] = {}
        self.contents: dict[int, bytes | int] = {}

    def publish(self, ino: int, entry: int) -> None:
        self.entries[ino] = entry

    def set_content(self, ino: int, content: bytes | int | None) -> None:
        if content is None:
            self.contents.pop(ino, None)
        else:
            self.contents[ino] = content


def _answers(server: Server, tree: Tree) -> dict[int, int]:
    """The entries the front must hold: what the server's own callbacks
    answer for each inode, and each attribute's notify count."""
    want = {}
    for ino, node in tree.inodes.items():
        entry = front.RELEASE if server.stateless(ino) else 0
        if server.cached_opendir(ino) is not None:
            entry |= front.DIR
        if server.cached_open(ino, os.O_RDONLY) is not None:
            entry |= front.OPEN
        elif isinstance(node, File) and node.mode & 0o444:
            entry |= front.DIRECT  # changed: read directly
        if isinstance(node, File):
            entry |= (node.event & 0x7FFF) << front.EVENT_SHIFT
        want[ino] = entry
    return want


def _contents(server: Server, tree: Tree) -> dict[int, bytes | int]:
    """The contents the front must answer READs with: what the kernel may
    cache (the last rendering), which is what each show gives now (or its
    errno): every change so far was revalidated."""
    want: dict[int, bytes | int] = {}
    for ino, content in server._served.items():
        if ino not in tree.inodes:
            continue  # gone: forgotten at the next revalidation
        want[ino] = content if isinstance(content, bytes) else content.errno
        try:
            assert want[ino] == tree.inodes[ino].read()
        except Errno as e:
            assert want[ino] == e.errno
    return want


def _fails() -> str:
    raise Errno(errno.ENXIO, "no such device")


async def test_the_front_table_follows_every_change():
    tree = _tree()
    value = {"size": "4096\n"}
    size = tree.root.walk("bus/dev0/size")
    size.show = lambda: value["size"]
    server = Server(tree, uid=os.getuid(), gid=os.getgid())
    table = _Table()
    server.attach_front(table)

    def exact() -> None:
        live = {ino: e for ino, e in table.entries.items() if ino in tree.inodes}
        assert live == _answers(server, tree)
        # a removed inode answers nothing (inode numbers are never reused)
        assert all(not e for ino, e in table.entries.items() if ino not in tree.inodes)
        assert table.contents == _contents(server, tree)
    exact()
    dev = tree.root.walk("bus/dev0")
    size = dev.get("size")
    power = Dir("power")
    power.add(File("control", 0o644, lambda: "auto\n", lambda data: None))
    dev.add(power)                       # a subtree at once
    exact()
    dev.remove("power")
    exact()
    size.notify()                        # new handles start from the new count
    exact()
    await server.getattr(size.ino, None)  # its size: rendered, so published
    assert table.contents[size.ino] == b"4096\n"
    exact()
    fh = server.cached_open(size.ino, os.O_RDONLY)
    await server.poll(size.ino, fh, None, None)   # the poll gives the handle state
    assert table.entries[size.ino] & front.RELEASE == 0
    exact()
    await server.release(fh)
    exact()
    state = dev.get("state")
    info = await server.open(state.ino, os.O_WRONLY, None)
    await server.write(info.fh, 0, b"busy\n")   # written: no cached opens any more
    assert table.entries[state.ino] & front.OPEN == 0
    exact()
    await server.release(info.fh)
    exact()
    value["size"] = "8192\n"             # a change the next revalidation finds
    await server.changed()
    assert size.ino not in table.contents and table.entries[size.ino] & front.DIRECT
    exact()
    failing = File("bad", 0o444, _fails)
    dev.add(failing)
    await server.getattr(failing.ino, None)
    assert table.contents[failing.ino] == errno.ENXIO
    exact()
    dev.remove("bad")
    assert failing.ino == 0 and table.contents == _contents(server, tree)


async def test_an_unmount_from_outside_ends_the_session(tmp_path):
    """The front's reader gets ENODEV, pyfuse3's workers (the spare parked
    on the read lock too) see the session end, and serve() returns."""
    tree = _tree()
    mnt = tmp_path / "mnt"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await _serving(nursery, tree, mnt)
            assert await trio.to_thread.run_sync(_read, mnt / "bus/dev0/size") == "4096\n"
            assert server.front_counts()["answered"] > 0  # the front's reader sees the end
            await trio.run_process(["umount", str(mnt)])
    assert not os.path.ismount(mnt)
