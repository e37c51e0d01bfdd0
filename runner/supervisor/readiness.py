"""Is the service listening on its port yet?

A plain connect would also succeed when *another* process holds the port (the
service then fails with "address in use" and we would call it ready). So we
read the kernel's socket tables and check that the listening socket belongs
to a process of the service's own process group.
"""

import os

from runner.supervisor.sock_diag import listeners

_LISTEN = "0A"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")



def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (any address, IPv4 or IPv6).

    Asked of the kernel's sock_diag (microseconds), else read from /proc/net/tcp*,
    which on a busy host lists tens of thousands of sockets (see sock_diag.py).
    """
    try:
        return listeners(port)
    except OSError:
        return _table_inodes(port)


def _table_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in _TABLES:
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                        inodes.add(inode)
        except FileNotFoundError:
            continue
    return inodes


def port_in_use(port: int) -> bool:
    """Whether some process already listens on `port`."""
    return bool(listening_inodes(port))


def group_listens(pgid: int, port: int) -> bool:
    """Whether a process of group `pgid` holds a socket listening on `port`."""
    inodes = listening_inodes(port)
    if not inodes:
        return False
    wanted = {f"socket:[{inode}]" for inode in inodes}
    # The leader almost always is the listener: look there before scanning all of /proc.
    return _holds(pgid, wanted) or any(_holds(pid, wanted) for pid in _other_members(pgid))


def _other_members(pgid: int) -> list[int]:
    """The processes of group `pgid` but its leader."""
    return [int(entry) for entry in os.listdir("/proc")
            if entry.isdigit() and int(entry) != pgid and _pgrp(entry) == pgid]


def _pgrp(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces): state ppid pgrp ...
    return int(stat.rsplit(")", 1)[1].split()[2])


def _holds(pid: int, wanted: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
        except OSError:
            continue
    return False
