"""Kafka plumbing shared by every service: the bus (producer), the consumer loop, topic admin."""
from .bus import Bus
from .consumer import Consumer, Message
from .admin import ensure_topics, delete_topics

__all__ = ["Bus", "Consumer", "Message", "ensure_topics", "delete_topics"]
