"""Encryption at rest: sealing.py (the AEAD and keyed chunk names, pure), keys.py (key slots: the master key
wrapped by passphrases or key files, pure); the repository's config object and slots in the bucket are
repository/keyring.py."""
