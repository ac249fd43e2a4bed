"""The backup format, as pure logic: chunk digests and compression, disk maps, manifests, OVF.

Written down in schemas/FORMAT.md; nothing here does I/O.
"""
