"""Which sockets listen on a port: the kernel's sock_diag answer is the /proc tables' answer."""

import socket

from runner.supervisor.readiness import _table_inodes
from runner.supervisor.sock_diag import listeners


def test_listeners_are_those_of_the_proc_tables() -> None:
    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6, socket.socket() as client:
        v4.bind(("127.0.0.1", 0))
        v4.listen()
        port = v4.getsockname()[1]
        v6.bind(("::1", port))
        v6.listen()
        client.connect(("127.0.0.1", port))  # a connected socket on the port is no listener
        found, tables = listeners(port), _table_inodes(port)
    assert len(found) == 2
    assert found == tables


def test_a_port_nobody_listens_on_has_no_listeners() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening
        port = s.getsockname()[1]
        found = listeners(port)
    assert found == set() == _table_inodes(port)
