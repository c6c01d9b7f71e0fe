"""Simulated hosts: Linux network namespaces on a bridge of the test's own.

::

    host (the test's own redis-server and PostgreSQL listen on GATEWAY as well as 127.0.0.1)
      bridge <prefix>br  GATEWAY = 10.199.N.1/24
        ├── veth <prefix>0h ═══ eth0 in namespace <prefix>-0  10.199.N.10  (e.g. summarise)
        ├── veth <prefix>1h ═══ eth0 in namespace <prefix>-1  10.199.N.11  (e.g. tag-a)
        └── ...

A process started with ``Host.command(...)`` runs inside the namespace (``ip netns exec``
execs, so the PID a test holds is the process itself) and reaches the host only at
``GATEWAY``: 127.0.0.1 inside a namespace is the namespace's own loopback. ``cut(host)``
takes the host's cable out (its veth end on the bridge goes down: packets are dropped,
nothing is reset), ``restore(host)`` puts it back.

Everything is named after the test process's PID, so tests running at once never share a
namespace or an interface, and ``close()`` removes all of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.support.services import in_ci


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def require_netns() -> None:
    """Skip (fail under CI) when this process cannot make network namespaces."""
    reason = None
    if shutil.which("ip") is None:
        reason = "no `ip` command (iproute2)"
    elif os.geteuid() != 0:
        reason = "network namespaces need root"
    else:
        probe = f"ifprobe{os.getpid()}"
        try:
            _ip("netns", "add", probe)
            _ip("netns", "del", probe)
        except RuntimeError as exc:
            reason = f"cannot create a network namespace: {exc}"
    if reason:
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    cable: str  # the veth end on the bridge (host side)

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]


class Network:
    """A bridge on the host and namespaces plugged into it; ``close()`` removes them."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.prefix = f"if{pid % 100000}"
        in_use = subprocess.run(
            ["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=30
        ).stdout
        free = (n for k in range(250) if f"10.199.{(n := (pid + k) % 250)}." not in in_use)
        self.subnet = f"10.199.{next(free)}"
        self.gateway = f"{self.subnet}.1"
        self.bridge = f"{self.prefix}br"
        self.hosts: dict[str, Host] = {}
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str) -> Host:
        index = len(self.hosts)
        namespace = f"{self.prefix}-{index}"
        cable, inside = f"{self.prefix}{index}h", f"{self.prefix}{index}n"
        address = f"{self.subnet}.{10 + index}"
        _ip("netns", "add", namespace)
        host = Host(name, namespace, address, cable)
        self.hosts[name] = host  # from here on close() removes it
        _ip("link", "add", cable, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", cable, "master", self.bridge)
        _ip("link", "set", cable, "up")
        in_ns = ["netns", "exec", namespace, "ip"]
        _ip(*in_ns, "link", "set", "lo", "up")
        _ip(*in_ns, "link", "set", inside, "name", "eth0")
        _ip(*in_ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip(*in_ns, "link", "set", "eth0", "up")
        _ip(*in_ns, "route", "add", "default", "via", self.gateway)
        return host

    def cut(self, host: Host) -> None:
        _ip("link", "set", host.cable, "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.cable, "up")

    def close(self) -> None:
        """Remove every namespace (and with it its veth pair) and the bridge; the
        processes inside must have been stopped first."""
        errors = []
        for host in self.hosts.values():
            for args in (("link", "del", host.cable), ("netns", "del", host.namespace)):
                try:
                    _ip(*args)
                except RuntimeError as exc:
                    if "Cannot find device" not in str(exc):
                        errors.append(str(exc))
        try:
            _ip("link", "del", self.bridge)
        except RuntimeError as exc:
            errors.append(str(exc))
        self.hosts.clear()
        assert not errors, errors
