"""The kernel's sock_diag netlink interface: which TCP sockets listen on a port.

`/proc/net/tcp` lists every socket of the network namespace: on a busy host
(tens of thousands of TIME_WAIT sockets) reading and parsing it took 10-600 ms
here, for each readiness probe. Asked through netlink with only the LISTEN
state wanted, the kernel walks its listening sockets alone and answers in a
fraction of a millisecond. The message layouts are those of `man 7 sock_diag`
(`linux/inet_diag.h`); no library in the standard one offers them. It uses
`_socket`, the C core of `socket`: the Python wrapper turns every constant
into an enum member at import (1-2 ms on the start path, for nothing here).
"""

import _socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_REQUEST = struct.Struct("=BBBBI48x")  # inet_diag_req_v2: family, protocol, ext, pad, states
_SPORT = struct.Struct("!H")  # inet_diag_msg.id.idiag_sport, in network order
_SPORT_AT, _INODE_AT = 4, 68  # offsets in inet_diag_msg
_INODE = struct.Struct("=I")
_ERRNO = struct.Struct("=i")


def listeners(port: int) -> set[str]:
    """Inodes of the TCP sockets (IPv4 and IPv6) listening on `port`.

    Raises OSError where netlink sock_diag is not available (then read /proc).
    """
    inodes: set[str] = set()
    link = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)
    try:
        for family in (_socket.AF_INET, _socket.AF_INET6):
            body = _REQUEST.pack(family, _socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
            header = _HEADER.pack(_HEADER.size + len(body), SOCK_DIAG_BY_FAMILY,
                                  NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            link.send(header + body)
            inodes |= _answer(link, port)
    finally:
        link.close()
    return inodes


def _answer(link: _socket.socket, port: int) -> set[str]:
    """Read one dump's messages up to NLMSG_DONE; the inodes of those on `port`."""
    inodes: set[str] = set()
    while True:
        data = link.recv(65536)
        if not data:
            return inodes
        offset = 0
        while offset < len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            message = offset + _HEADER.size
            if kind == NLMSG_DONE:
                return inodes
            if kind == NLMSG_ERROR:
                raise OSError(-_ERRNO.unpack_from(data, message)[0], "sock_diag refused")
            if _SPORT.unpack_from(data, message + _SPORT_AT)[0] == port:
                inodes.add(str(_INODE.unpack_from(data, message + _INODE_AT)[0]))
            offset += max(_HEADER.size, (length + 3) & ~3)  # messages are 4-byte aligned
