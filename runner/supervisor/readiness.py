"""Is the service listening on its port yet?

A plain connect would also succeed when *another* process holds the port (the
service then fails with "address in use" and we would call it ready). So we
read the kernel's socket tables and check that the listening socket belongs
to a process of the service's own process group.
"""

import os
import socket
import struct

_LISTEN = "0A"
_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST_DUMP = 0x301
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLMSG_HEADER = struct.Struct("=LHHLL")  # length, type, flags, sequence, port id
DIAG_REQUEST = struct.Struct("=BBBxI48x")  # family, protocol, extensions, states, socket id
TCP_LISTEN_STATE = 1 << 10
SPORT_AT, INODE_AT = 4, 68  # in struct inet_diag_msg


def listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on `port` (any address, IPv4 or IPv6)."""
    try:
        return _diag_listening(port)
    except OSError:
        return _proc_listening(port)


def _diag_listening(port: int) -> set[str]:
    inodes: set[str] = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, TCP_LISTEN_STATE)
            nl.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                      NLM_F_REQUEST_DUMP, 1, 0) + request)
            while _diag_reply(nl.recv(65536), port, inodes):
                pass
    return inodes


def _diag_reply(data: bytes, port: int, inodes: set[str]) -> bool:
    """Take one netlink datagram of the dump; False once it says done."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(data):
        length, kind, _, _, _ = NLMSG_HEADER.unpack_from(data, offset)
        if kind == NLMSG_DONE:
            return False
        if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
            raise OSError("sock_diag refused the request")
        body = offset + NLMSG_HEADER.size
        if struct.unpack_from("!H", data, body + SPORT_AT)[0] == port:
            inodes.add(str(struct.unpack_from("=I", data, body + INODE_AT)[0]))
        offset += (length + 3) & ~3
    return True


def _proc_listening(port: int) -> set[str]:
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
