"""Kafka plumbing shared by every service: the bus (producer), the consumer loop, topic admin."""
from .tansu import no_auto_create

no_auto_create.install()

from .bus import Bus  # noqa: E402  (after the patch: nothing may create topics by asking about them)
from .consumer import Consumer, Message  # noqa: E402
from .admin import create_topic, delete_topics, ensure_topics  # noqa: E402
from .leased import LeasedConsumer, offsets_group  # noqa: E402
from .replay import Replay  # noqa: E402

__all__ = ["Bus", "Consumer", "LeasedConsumer", "Message", "Replay", "create_topic", "delete_topics",
           "ensure_topics", "offsets_group"]
