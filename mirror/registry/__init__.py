"""The registry client: transport, repositories, options."""

from mirror.registry.client import RegistryClient
from mirror.registry.options import HostSettings, RegistryOptions
from mirror.registry.repository import Repository

__all__ = ["HostSettings", "RegistryClient", "RegistryOptions", "Repository"]
