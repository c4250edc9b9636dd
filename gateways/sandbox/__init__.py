"""The bundled gateway sandbox (see `core.py`): `python -m gateways.sandbox --port 8900`."""
from .core import CREDENTIALS, OPTIONS, PROVIDERS, Fault, Sandbox, SandboxServer, start

__all__ = ["CREDENTIALS", "OPTIONS", "PROVIDERS", "Fault", "Sandbox", "SandboxServer", "start"]
