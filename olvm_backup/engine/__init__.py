"""The engine adapter: the oVirt REST API v4 through ovirtsdk4, run off the event loop."""
from .connection import Engine, EngineError, EngineGaveUp, EngineNotFound, EngineUnavailable

__all__ = ["Engine", "EngineError", "EngineGaveUp", "EngineNotFound", "EngineUnavailable"]
