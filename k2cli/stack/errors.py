"""Errors of the local stack: each one names the service, the port or the file an operator needs."""

from __future__ import annotations

from k2cli.errors import ConfigError, K2Error, ServiceUnavailable


class StackError(K2Error):
    """Base of every local-stack failure."""

    exit_code = 3


class InstallError(StackError):
    """A binary, jar or package the stack needs could not be installed or found."""


class PortInUse(StackError):
    """A port a stack service must bind is held by a process k2 did not start."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"port {port} needed by {service} is already in use by a process k2 did not start; "
                         f"stop it or configure {service} on another port")
        self.service = service
        self.port = port


class ServiceStartError(StackError, ServiceUnavailable):
    """A service exited while starting, or did not become healthy in time."""

    def __init__(self, service: str, reason: str, log_file: str) -> None:
        super().__init__(f"{service} {reason}; see its log: {log_file}")
        self.service = service
        self.log_file = log_file


class StackConfigError(StackError, ConfigError):
    """A setting cannot be used to run the local stack (e.g. a remote host)."""

    exit_code = 2


__all__ = ["InstallError", "PortInUse", "ServiceStartError", "StackConfigError", "StackError"]
