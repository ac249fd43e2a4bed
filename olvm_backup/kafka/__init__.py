"""Kafka plumbing shared by every service: the bus (producer), the consumer loop, topic admin."""
from .bus import Bus
from .consumer import Consumer, Message
from .admin import create_topic, delete_topics, ensure_topics
from .leased import LeasedConsumer

__all__ = ["Bus", "Consumer", "LeasedConsumer", "Message", "create_topic", "delete_topics", "ensure_topics"]
