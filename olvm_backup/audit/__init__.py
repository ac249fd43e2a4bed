"""The durable audit trail: what the auditor service keeps in the object store (`audit/`), and how it is read.

- trail.py: the objects' format, what is kept, identities and de-duplication (pure);
- history.py: the rows `olvm-backup history` shows (pure);
- reading.py: reading the objects of a time range from the store.
"""
