"""pyfuse3 operations over the tree a fake serves (sysfs/tree.py).

Generic: the server knows directories, attribute files, binary (media)
files and symlinks, never what they mean.  What it guarantees:

* an attribute read always returns what its ``show`` gives now.  The
  kernel's page cache keeps attribute contents between opens (reads cost
  no request): after every request that may have changed the model (a
  write), every attribute the kernel may hold is rendered again and the
  ones whose content changed are invalidated before that request returns.
  ``st_size`` is the content's length, so nothing is cut;
* a write reaches the attribute's ``store`` as one call and an ``Errno``
  raised there becomes the writer's errno;
* entries removed from the tree are invalidated in the kernel's dentry
  cache before the request that removed them completes, so long lookup
  timeouts are safe; so is every directory whose entries changed (the
  kernel caches listings and symlink targets too, see session.py).

Most opens are of attributes the kernel caches.  They get a *stateless*
handle, which encodes the inode (and what a poll needs) instead of
naming an entry of ``_open``: nothing has to be released when they
close, so the front (front.py) answers their OPEN and RELEASE, and READs
of what was rendered last, without Python (session.py does without a
handler where there is no front).  A POLL on one gives it state, and
RELEASEs of its inode come here again.
"""

from __future__ import annotations

import collections
import errno
import functools
import itertools
import logging
import os
import select
import stat
import time
from dataclasses import dataclass

import pyfuse3
import trio
from typing import Callable, Iterator

from fakesys.errors import Errno
from fakesys.fuse import front, loop, session
from fakesys.sysfs.tree import Blob, DeviceNode, Dir, File, Link, Node, Tree

log = logging.getLogger("fakesys.fuse")

# How long the kernel may keep entries and attrs without asking.  Nothing
# here relies on their expiry: removed and once-missing entries, changed
# attributes and directories whose subdirectories changed are invalidated
# explicitly.  A short timeout only made a tool pay a LOOKUP per path again
# (ndctl list after 5 s idle: 1,095 requests instead of 789).
ENTRY_TIMEOUT = 300.0
MAX_TASKS = 64
# a stateless handle: this bit, the attribute's notify count at open (15
# bits) and an open count (16 bits, keeping concurrent opens apart), inode
_STATELESS = 1 << 63
_EVENT_BITS = 0x7FFF


@dataclass(frozen=True)
class _Failed:
    """Content whose show failed: what a READ of it answers."""
    errno: int


@dataclass
class _Handle:
    node: Node
    writable: bool
    content: bytes | None = None
    event: int = 0                  # the attribute's notify count at open
    pid: int = 0                    # the process that opened it


class Server(pyfuse3.Operations):
    """Serves ``tree`` over FUSE; ``uid``/``gid`` own every entry."""

    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, tree: Tree, uid: int = 0, gid: int = 0,
                 requester: Callable[[int], None] = lambda pid: None) -> None:
        super().__init__()
        self.tree = tree
        # told which process a write comes from (0 when done), like "current"
        self.requester = requester
        self.uid = uid
        self.gid = gid
        self._fh = itertools.count(1)
        self._open: dict[int, _Handle] = {}
        self._held: collections.Counter[int] = collections.Counter()  # inode -> _Handles
        self._opens = itertools.count()
        self._stale: list[tuple[int, str]] = []
        self._stale_dirs: set[int] = set()
        self._negative: set[tuple[int, str]] = set()
        # attribute inodes whose content the kernel may cache -> that content
        self._served: dict[int, bytes | _Failed] = {}
        # symlink inodes whose target the kernel may cache -> that target
        self._targets: dict[int, bytes] = {}
        # attributes whose content changed and whose invalidation has not
        # completed yet -> (the content and version the kernel may hold)
        self._pending: dict[int, tuple[bytes | _Failed, int]] = {}
        # entries carry the mount's time as sysfs carries the boot's
        self._epoch = time.time_ns()
        # content version of each attribute, and listing version of each
        # directory, added to its mtime in ns (see _revalidate, _changed)
        self._version: dict[int, int] = {}
        self._versions = itertools.count(1)
        self.mounted = False
        self._polls: dict[int, pyfuse3.PollHandle] = {}  # fh -> handle of a waiting poll
        self._pending_notify: set[int] = set()
        self._front: front.Front | None = None
        tree.listeners.append(self._changed)
        tree.poll_listeners.append(self._notified)
        tree.inode_listeners.append(self._inode_changed)

    # -- invalidation -----------------------------------------------------

    def _changed(self, parent: Dir, name: str, removed: bool) -> None:
        # A removed entry may sit in the dentry cache; an added one only if
        # we answered a lookup of that name negatively (cached for a while).
        if not self.mounted:
            return
        key = (parent.ino, name)
        if removed or key in self._negative:
            self._negative.discard(key)
            self._stale.append(key)
        # The kernel caches the listing (and st_nlink counts subdirectories).
        # A listing read before the change may enter that cache after the
        # invalidation; it was started under the old mtime, and the reader
        # at the next opendir compares mtimes and drops it.
        self._stale_dirs.add(parent.ino)
        self._bump(parent.ino)

    # -- attributes -------------------------------------------------------

    def _attr(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        a.entry_timeout = ENTRY_TIMEOUT
        a.attr_timeout = ENTRY_TIMEOUT
        a.st_mtime_ns = a.st_ctime_ns = a.st_atime_ns = self._epoch
        if isinstance(node, Dir):
            a.st_mode = stat.S_IFDIR | node.mode
            a.st_nlink = 2 + node.subdirs
            a.st_size = 0
            a.st_mtime_ns = a.st_ctime_ns = self._epoch + self._version.get(node.ino, 0)
        elif isinstance(node, Link):
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
            a.st_size = 0
        elif isinstance(node, DeviceNode):
            a.st_mode = (stat.S_IFCHR if node.kind == "c" else stat.S_IFBLK) | node.mode
            a.st_nlink = 1
            a.st_size = 0
            a.st_rdev = os.makedev(node.major, node.minor)
        elif isinstance(node, Blob):
            a.st_mode = stat.S_IFREG | node.mode
            a.st_nlink = 1
            a.st_size = node.size()
            a.attr_timeout = 0
        else:
            assert isinstance(node, File)
            a.st_mode = stat.S_IFREG | node.mode
            a.st_nlink = 1
            pending = self._pending.get(node.ino)
            if pending is not None:
                # changed, invalidation under way: the old version, which the
                # kernel must not keep (see _revalidate)
                content, version = pending
                a.attr_timeout = 0
            else:
                # what the kernel holds of it, if anything: _revalidate keeps
                # that current (a readdirplus would otherwise run every show)
                content = self._served.get(node.ino)
                if content is None:
                    content = (self._render(node) if node.mode & 0o444 and node.show
                               else _Failed(errno.EIO))
                version = self._version.get(node.ino, 0)
            a.st_size = len(content) if isinstance(content, bytes) else node.size
            a.st_mtime_ns = a.st_ctime_ns = a.st_atime_ns = self._epoch + version
        a.st_uid = self.uid
        a.st_gid = self.gid
        a.st_blksize = 4096
        a.st_blocks = 0
        return a

    async def lookup(self, parent_inode, name, ctx=None):
        parent = self._node(parent_inode)
        if not isinstance(parent, Dir):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        text = os.fsdecode(name)
        child = parent.get(text)
        if child is None:
            # a cached negative entry: tools probe many optional attributes
            self._negative.add((parent_inode, text))
            miss = pyfuse3.EntryAttributes()
            miss.st_ino = 0
            miss.entry_timeout = ENTRY_TIMEOUT
            return miss
        return self._attr(child)

    async def getattr(self, inode, ctx=None):
        return self._attr(self._node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        # O_TRUNC on an attribute arrives as a size change: ignore it as sysfs does.
        return self._attr(self._node(inode))

    async def readlink(self, inode, ctx):
        node = self._node(inode)
        if not isinstance(node, Link):
            raise pyfuse3.FUSEError(errno.EINVAL)
        target = self._targets[inode] = os.fsencode(node.readlink())
        return target

    async def forget(self, inode_list):
        return None

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s

    # -- directories ------------------------------------------------------

    # A directory handle is its inode: kernfs_fop_readdir() walks the live
    # children in (hash, name) order and resumes at a position made of the
    # next one's hash, so a listing needs no state to release, and entries
    # added or removed during it do not shift the others.

    async def opendir(self, inode, ctx):
        if not isinstance(self._node(inode), Dir):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    def cached_opendir(self, inode: int) -> int | None:
        """The handle of a directory, None for anything else."""
        return inode if isinstance(self.tree.inodes.get(inode), Dir) else None

    async def readdir(self, fh, start_id, token):
        node = self.tree.inodes.get(fh)
        if not isinstance(node, Dir):
            return  # removed since it was opened: nothing left to list
        for name, child, next_id in _positions(node):
            if next_id <= start_id:
                continue
            if not pyfuse3.readdir_reply(token, os.fsencode(name), self._attr(child), next_id):
                return

    async def releasedir(self, fh):
        return None

    # -- files ------------------------------------------------------------

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if isinstance(node, Dir):
            raise pyfuse3.FUSEError(errno.EISDIR)
        if not isinstance(node, (File, Blob)):
            raise pyfuse3.FUSEError(errno.EACCES)
        acc = flags & os.O_ACCMODE
        want_read = acc in (os.O_RDONLY, os.O_RDWR)
        want_write = acc in (os.O_WRONLY, os.O_RDWR)
        if (want_read and not node.mode & 0o444) or (want_write and not node.mode & 0o222):
            raise pyfuse3.FUSEError(errno.EACCES)
        fh = self.cached_open(inode, flags)
        if fh is not None:
            return pyfuse3.FileInfo(fh=fh, direct_io=False, keep_cache=True)
        fh = next(self._fh)
        self._keep(fh, _Handle(node, want_write, event=getattr(node, "event", 0),
                               pid=getattr(ctx, "pid", 0)))
        # Through the page cache a read is cut to the size the kernel holds,
        # which may be of another version than the page: a write through the
        # kernel moves it, and a size refresh racing an invalidation is
        # dropped (it kept the size of two versions ago).  So an attribute
        # that has changed or been written once is read directly from then
        # on: the size is the reply's, one snapshot per open, as sysfs'
        # seq_file gives.  The static majority stays cached.
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    async def read(self, fh, off, size):
        try:
            return self._read(self._handle(fh), off, size)
        except Errno as e:
            raise pyfuse3.FUSEError(e.errno) from None

    def cached_read(self, fh: int, off: int, size: int) -> bytes | None:
        """A READ through a stateless handle (an attribute the kernel caches
        but does not hold: the first read, or one whose show fails);
        None for any other handle.  Raises Errno as the READ's answer."""
        if not fh & _STATELESS:
            return None
        return self._read(self._handle(fh), off, size)

    def _read(self, handle: _Handle, off: int, size: int) -> bytes:
        node = handle.node
        try:
            if isinstance(node, Blob):
                return node.read(off, size)
            if handle.content is None or off == 0:
                handle.event = node.event
                pending = self._pending.get(node.ino)
                if pending is not None and isinstance(pending[0], bytes):
                    content = pending[0]  # the version the kernel's size is of
                else:
                    content = self._render(node, strict=True)
                assert isinstance(content, bytes)
                handle.content = content
        except Errno:
            raise
        except Exception:
            self.faults += 1
            log.exception("show /%s failed", node.path())
            raise Errno(errno.EIO, "show failed") from None
        return handle.content[off:off + size]

    async def write(self, fh, off, buf):
        handle = self._handle(fh)
        node = handle.node
        self.requester(handle.pid)
        try:
            if isinstance(node, Blob):
                return node.write(off, bytes(buf))
            return node.write(bytes(buf))
        except Errno as e:
            log.debug("write %r to %s: %s", bytes(buf)[:64], node.path(), e)
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            self.faults += 1
            log.exception("store %r to /%s failed", bytes(buf)[:64], node.path())
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            self.requester(0)
            await self._revalidate(extra=[node.ino])

    async def flush(self, fh):
        # Nothing to flush: ENOSYS makes the kernel stop sending FLUSH at all.
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def fsync(self, fh, datasync):
        return None

    async def release(self, fh):
        handle = self._open.pop(fh, None)
        if isinstance(handle, _Handle):
            self._held[handle.node.ino] -= 1
            if not self._held[handle.node.ino]:
                del self._held[handle.node.ino]  # its RELEASEs need no handler again
                self._publish(handle.node)
        self._polls.pop(fh, None)

    def cached_open(self, inode: int, flags: int) -> int | None:
        """The stateless handle of a read-only open of an unchanged
        attribute, which the kernel caches; None for any other open."""
        node = self.tree.inodes.get(inode)
        if flags & os.O_ACCMODE == os.O_RDONLY and self._cacheable(node):
            # open counts with the top bit set are the front's
            return (_STATELESS | (node.event & _EVENT_BITS) << 48
                    | (next(self._opens) & 0x7FFF) << 32 | inode)
        return None

    def _cacheable(self, node: Node | None) -> bool:
        """An attribute whose opens are cached: readable, never changed."""
        return self._readable(node) and node.ino not in self._version

    @staticmethod
    def _readable(node: Node | None) -> bool:
        """An attribute a stateless handle can read (its inode fits one)."""
        return type(node) is File and bool(node.mode & 0o444) and node.ino >> 32 == 0

    def stateless(self, inode: int) -> bool:
        """No handle of ``inode`` holds state: a RELEASE of it has nothing to do."""
        return inode not in self._held

    def _keep(self, fh: int, handle: _Handle) -> None:
        self._open[fh] = handle
        self._held[handle.node.ino] += 1
        if self._held[handle.node.ino] == 1:
            self._publish(handle.node)  # its RELEASEs come here from now on

    async def poll(self, inode, fh, poll_handle, ctx):
        """kernfs_generic_poll(): POLLERR|POLLPRI once the attribute was
        notified since it was opened (or last read from offset 0)."""
        handle = self._handle(fh, keep=True)
        ready = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM
        if isinstance(handle.node, File) and handle.event != handle.node.event:
            return ready | select.POLLERR | select.POLLPRI
        if poll_handle is not None and isinstance(handle.node, File):
            self._polls[fh] = poll_handle
        return ready

    def _notified(self, node: File) -> None:
        # delivered by the next _revalidate(), once stale contents are gone
        self._pending_notify.add(node.ino)
        self._publish(node)  # the count new handles start from

    def _wake_pollers(self) -> None:
        pending, self._pending_notify = self._pending_notify, set()
        for fh, handle in list(self._open.items()):
            if isinstance(handle, _Handle) and handle.node.ino in pending and fh in self._polls:
                ph = self._polls.pop(fh)
                try:
                    ph.notify()
                except Exception:
                    log.debug("poll notify failed", exc_info=True)

    # -- the content cache ---------------------------------------------------

    def _render(self, node: File, strict: bool = False) -> bytes | _Failed:
        """Render an attribute and remember what the kernel may now cache."""
        try:
            content: bytes | _Failed = node.read()
        except Errno as e:
            self._serve(node.ino, _Failed(e.errno))
            if strict:
                raise
            return _Failed(e.errno)
        except Exception:
            # a crashing show: the read reports EIO (and logs); stat still works
            self._serve(node.ino, _Failed(errno.EIO))
            if strict:
                raise
            self.faults += 1
            log.exception("show /%s failed", node.path())
            return _Failed(errno.EIO)
        self._serve(node.ino, content)
        return content

    def _serve(self, ino: int, content: bytes | _Failed) -> None:
        """What the kernel may now cache of ``ino``, and the front answer."""
        self._served[ino] = content
        if self._front is not None:
            self._front.set_content(ino, content if isinstance(content, bytes) else content.errno)

    def _unserve(self, ino: int) -> bytes | _Failed | None:
        """Forget what ``ino`` showed (it changed): READs come here again."""
        if self._front is not None:
            self._front.set_content(ino, None)
        return self._served.pop(ino, None)

    async def changed(self) -> None:
        """Call after the model changed outside a write (ioctl, control)."""
        await self._revalidate()

    async def _revalidate(self, extra: list[int] = ()) -> None:
        """Invalidate stale dentries and every cached attribute whose content changed.

        The kernel pairs the size it took from an attribute's attrs with
        the page it took from a READ.  Other requests run while the
        invalidation (a system call in a thread) is under way, and one
        that handed out the new content then would be paired with the old
        size: a reader got the new bytes cut to the old length, or the old
        length padded with zeros (measured: 3-6% of reads racing a writer).
        So a changed attribute is *pending* from the change (this
        synchronous part runs in the same step as the store) until its
        invalidation has returned, and every request in between gets the
        old version: a READ the old content, an attr reply the old size
        and version with an attr timeout of 0.  Each content version is
        served as the attribute's mtime: a reader refreshes expired attrs
        before reading (auto_inval_data), and the kernel drops cached pages
        whose attrs come back with another size or mtime, so an old
        version cached while pending never outlives the change.
        """
        stale = []
        mine = []  # the pending marks this call sets, and clears once invalidated
        for ino in extra:
            stale.append(ino)
            if self._mark_pending(ino, self._unserve(ino)):
                mine.append(ino)
            elif ino not in self._pending:
                self._bump(ino)  # written: read directly from now on
        for ino, target in list(self._targets.items()):
            node = self.tree.inodes.get(ino)
            if not isinstance(node, Link) or os.fsencode(node.readlink()) != target:
                del self._targets[ino]
                stale.append(ino)
        for ino, before in list(self._served.items()):
            node = self.tree.inodes.get(ino)
            if not isinstance(node, File):
                self._unserve(ino)
                continue
            try:
                now: bytes | _Failed = node.read()
            except Errno as e:
                now = _Failed(e.errno)
            except Exception:
                log.exception("show %s failed", node.path())
                now = _Failed(errno.EIO)
            if now is not before and now != before:
                self._unserve(ino)
                stale.append(ino)
                if self._mark_pending(ino, before):
                    mine.append(ino)
        entries = [key for key in self._stale if key[0]]
        dirs = sorted(self._stale_dirs - {0})
        self._stale, self._stale_dirs = [], set()
        try:
            if self.mounted and (entries or dirs or stale):
                # one thread for all: entries, the directories that held
                # them, then the changed attributes and symlinks
                await _in_thread(_invalidate, entries, dirs + stale)
        finally:
            for ino in mine:
                del self._pending[ino]
        if self._pending_notify:
            self._wake_pollers()

    def _mark_pending(self, ino: int, before: bytes | _Failed | None) -> bool:
        if before is None or ino in self._pending:
            return False  # the kernel holds nothing of it / already pending
        self._pending[ino] = (before, self._version.get(ino, 0))
        self._bump(ino)
        return True

    def _bump(self, ino: int) -> None:
        """A new content (listing) version: never cached from an open again."""
        self._version[ino] = next(self._versions)
        self._publish(self.tree.inodes.get(ino))

    # -- the front (front.c) ---------------------------------------------------

    def attach_front(self, front_: front.Front | None) -> None:
        """Answer through ``front_`` from now on (None: no longer)."""
        self._front = front_
        if front_ is not None:
            for node in self.tree.inodes.values():
                self._publish(node)
            for ino, content in self._served.items():
                self._serve(ino, content)

    def _publish(self, node: Node | None) -> None:
        """Tell the front how to answer for ``node`` now: what cached_open(),
        stateless() and cached_opendir() answer, that a read-only open of a
        changed attribute may be stateless too (read directly: open() keeps
        a handle only for the writer's pid and a poll's state, which come
        here anyway), and the notify count its new handles start from."""
        if self._front is None or node is None:
            return
        entry = 0 if node.ino in self._held else front.RELEASE
        if isinstance(node, Dir):
            entry |= front.DIR
        elif isinstance(node, File):
            entry |= (node.event & _EVENT_BITS) << front.EVENT_SHIFT
            if self._readable(node):
                entry |= front.DIRECT if node.ino in self._version else front.OPEN
        self._front.publish(node.ino, entry)

    def front_counts(self) -> dict[str, int] | None:
        """Requests the front answered and handed on (None: no front)."""
        if self._front is None:
            return None
        answered, queued = self._front.counts()
        return {"answered": answered, "queued": queued}

    def _inode_changed(self, node: Node, attached: bool) -> None:
        if attached:
            self._publish(node)
        elif self._front is not None:
            self._front.publish(node.ino, 0)
            self._front.set_content(node.ino, None)

    # -- helpers ----------------------------------------------------------

    def _node(self, inode: int) -> Node:
        try:
            return self.tree.node(inode)
        except Errno as e:
            raise pyfuse3.FUSEError(e.errno) from None

    def _handle(self, fh: int, keep: bool = False) -> _Handle:
        handle = self._open.get(fh)
        if handle is None and fh & _STATELESS:
            handle = self._stateless_handle(fh, keep)
        if not isinstance(handle, _Handle):
            raise Errno(errno.EBADF, f"no open file {fh:#x}")  # the reply (_guard, cached_read)
        return handle

    def _handle_node(self, op: str, fh: int) -> Node | None:
        """What a handle of ``op`` refers to (for messages)."""
        if op in ("readdir", "releasedir"):
            return self.tree.inodes.get(fh)
        handle = self._open.get(fh)
        if handle is None and fh & _STATELESS:
            return self.tree.inodes.get(fh & 0xFFFFFFFF)
        return getattr(handle, "node", None)

    def _stateless_handle(self, fh: int, keep: bool) -> _Handle | None:
        """A handle for a stateless ``fh``: kept (from now on released through
        the handler) for a poll, for one request otherwise.  A READ needs none:
        the kernel asks for all of a cached attribute in one."""
        node = self.tree.inodes.get(fh & 0xFFFFFFFF)
        if not isinstance(node, File):
            return None
        # the latest notify count with the low bits it had at open
        at_open = (fh >> 48) & _EVENT_BITS
        event = node.event - ((node.event - at_open) & _EVENT_BITS)
        handle = _Handle(node, False, event=event)
        if keep:
            self._keep(fh, handle)
        return handle


def _positions(node: Dir) -> Iterator[tuple[str, Node, int]]:
    """(name, node, position of the next entry) of a listing: "." and ".."
    at 1 and 2, then each child at its name hash (shifted, plus its rank
    among equal hashes), in kernfs order."""
    yield ".", node, 1
    yield "..", node.parent or node, 2
    last, rank = -1, 0
    for child in node:
        rank = rank + 1 if child.hash == last else 0
        last = child.hash
        yield child.name, child, (child.hash << 16 | rank) + 1


async def _in_thread(fn: Callable[..., None], *args: object) -> None:
    # An invalidation can wait for a request only another worker answers
    # (a READ holding a page lock, a lookup holding the directory).
    loop.lend()
    await trio.to_thread.run_sync(fn, *args)


def _invalidate(entries: list[tuple[int, str]], inodes: list[int]) -> None:
    """Drop dentries, then the attrs and pages of inodes: an attribute's
    content (with the attrs alone, a reader holding a page-cache handle from
    before the change could pair a stale page with the new size: measured),
    a directory's listing and st_nlink, a symlink's target.  Dropping pages
    waits for the page lock of any READ in flight: a daemon SIGKILLed then
    cannot finish exiting, and its connection stays alive until `up` aborts
    it (runtime.abort_connection)."""
    for parent_ino, name in entries:
        try:
            pyfuse3.invalidate_entry(parent_ino, os.fsencode(name))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.EBADF):
                log.warning("invalidate %d/%s: %s", parent_ino, name, e)
    for ino in inodes:
        try:
            pyfuse3.invalidate_inode(ino, attr_only=False)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EBADF):
                log.warning("invalidate inode %d: %s", ino, e)


def mount_options(fsname: str, allow_other: bool = False) -> set[str]:
    """Mount options: sysfs-like permissions enforced by the kernel."""
    opts = set(pyfuse3.default_options)
    opts -= {"default_permissions", "dev", "suid"}
    # nodev: device nodes in the tree must never open a host driver
    opts |= {f"fsname={fsname}", "subtype=fakesys", "default_permissions", "nodev", "nosuid"}
    if allow_other:
        opts.add("allow_other")
    return opts


async def serve(server: Server, mountpoint: str, options: set[str],
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Mount and serve until cancelled; unmounts on the way out."""
    pyfuse3.init(server, mountpoint, options)
    reader = front.start(pyfuse3)
    if reader is not None:
        loop.install(pyfuse3, reader.wake_fd, lambda events: reader.ended())
    else:
        loop.install(pyfuse3)
    session.tune(pyfuse3, server)
    server.attach_front(reader)
    server.mounted = True
    try:
        task_status.started()
        # Many tasks: an invalidation may wait for a READ or lookup another
        # task answers, one blocked writer per task; with a handful of tasks,
        # concurrent tools could occupy them all.  pyfuse3 starts one when
        # none is left waiting, idle ones end again (loop.py: one reads).
        await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
    finally:
        server.mounted = False
        if reader is not None:
            server.attach_front(None)
            reader.stop()
        pyfuse3.close(unmount=True)


# -- fault containment ---------------------------------------------------------
#
# pyfuse3 lets any exception other than FUSEError escape from a handler into
# its main loop, which ends the loop: the mount goes away and the caller never
# gets an answer.  A bug in one show/store (or here) must cost one request, not
# the mount: every operation answers EIO instead, after logging the fault with
# the request's context.

def _context(server: Server, op: str, args: tuple) -> str:
    first = args[0] if args else None
    parts = []
    try:
        if op in ("read", "write", "flush", "fsync", "release", "readdir", "releasedir"):
            node = server._handle_node(op, first)
            parts.append(f"fh {first}" + (f" /{node.path()}" if node is not None else ""))
            if op in ("read", "write", "readdir") and len(args) > 1:
                parts.append(f"offset {args[1]}")
            if op == "write" and len(args) > 2:
                parts.append(f"data {bytes(args[2])[:64]!r}")
        elif isinstance(first, int):
            node = server.tree.inodes.get(first)
            parts.append(f"inode {first}" + (f" /{node.path()}" if node is not None else ""))
            if op == "lookup" and len(args) > 1:
                parts.append(f"name {os.fsdecode(args[1])!r}")
    except Exception:  # the context must never hide the fault
        parts.append("(no context)")
    return ", ".join(parts)


def _guard(op: str, fn):
    @functools.wraps(fn)
    async def guarded(self, *args):
        try:
            return await fn(self, *args)
        except pyfuse3.FUSEError:
            raise
        except Errno as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            self.faults += 1
            log.exception("FUSE %s failed (%s)", op, _context(self, op, args))
            if op == "forget":
                return None
            raise pyfuse3.FUSEError(errno.EIO) from None
    return guarded


Server.faults = 0  # faults contained so far (per instance once one happened)
for _op in ("lookup", "getattr", "setattr", "readlink", "forget", "statfs", "opendir",
            "readdir", "releasedir", "open", "read", "write", "flush", "fsync", "release",
            "poll"):
    if _op in Server.__dict__:
        setattr(Server, _op, _guard(_op, Server.__dict__[_op]))
del _op
