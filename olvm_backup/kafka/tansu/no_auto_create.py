"""Metadata requests that never create topics.

aiokafka asks for metadata with `allow_auto_topic_creation` left at true, and
a broker that auto-creates (Tansu always does; Kafka by default) then brings
back a topic we just deleted whenever a late producer or a fetcher still
assigned to it asks about it: a deleted wave topic would come back, empty,
again and again. Every topic of ours is created explicitly (admin.py), so
every client in this process asks without creating.
"""
from __future__ import annotations

import functools

import aiokafka.client
from aiokafka.protocol.metadata import MetadataRequest


def install() -> None:
    if not isinstance(aiokafka.client.MetadataRequest, functools.partial):
        aiokafka.client.MetadataRequest = functools.partial(MetadataRequest, allow_auto_topic_creation=False)
