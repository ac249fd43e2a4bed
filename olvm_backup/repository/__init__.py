"""The backup repository in object storage: everything that reads or writes restore points.

- catalog.py: restore points (manifests and OVFs) listed, read and committed
- packs.py: chunks packed into multipart objects, each with its index object
- chunkindex.py: which chunk is stored where, from the pack indexes and the `packs` topic
- chunkfetch.py: chunks read back from packs, coalesced and verified
- verify.py, export.py: a restore point checked chunk by chunk, a disk written to a raw file

The layout and the write order are in schemas/FORMAT.md.
"""
