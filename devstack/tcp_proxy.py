"""A TCP proxy on 127.0.0.1 that a test can cut and restore: the fault proxy in its TCP form, under its old name."""

from __future__ import annotations

from devstack.fault_proxy import FaultProxy as TcpProxy

__all__ = ["TcpProxy"]
