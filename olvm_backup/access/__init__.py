"""File-level and network access to restore points: a disk of a restore point as a random-access image
(image.py), the file systems found on it (filesystems.py, with the optional AGPL `files` extra), and what serves
or mounts them on top."""
