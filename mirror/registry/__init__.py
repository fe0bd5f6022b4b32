"""The registry client: transport, repositories, options."""

from mirror.registry.client import RegistryClient
from mirror.registry.options import RegistryOptions
from mirror.registry.repository import Repository

__all__ = ["RegistryClient", "RegistryOptions", "Repository"]
