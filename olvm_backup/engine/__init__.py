"""The engine adapter: the oVirt REST API v4 through ovirtsdk4, run off the event loop."""
from .connection import Engine, EngineError, EngineNotFound

__all__ = ["Engine", "EngineError", "EngineNotFound"]
