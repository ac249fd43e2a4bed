"""Decoded chunks kept for re-reads, bounded by their bytes, least recently used out first. Thread-safe."""
from __future__ import annotations

import threading
from collections import OrderedDict


class ChunkCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = 0
        self._chunks: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._chunks.get(digest)
            if data is not None:
                self._chunks.move_to_end(digest)
            return data

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._chunks

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > self.capacity:
            return  # would push out everything else and still not fit
        with self._lock:
            old = self._chunks.pop(digest, None)
            if old is not None:
                self.size -= len(old)
            self._chunks[digest] = data
            self.size += len(data)
            while self.size > self.capacity:
                _, gone = self._chunks.popitem(last=False)
                self.size -= len(gone)

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.size = 0
