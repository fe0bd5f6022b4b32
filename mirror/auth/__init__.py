"""Registry authentication: challenges, credentials, token sessions."""

from mirror.auth.challenge import Challenge, parse_challenges
from mirror.auth.credentials import Credentials, DockerConfig, parse_creds

__all__ = ["Challenge", "Credentials", "DockerConfig", "parse_challenges", "parse_creds"]
