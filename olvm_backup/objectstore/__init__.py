"""Object storage behind one narrow interface: the S3 implementation, and retry as a wrapper around it."""
from .base import MultipartWriter, ObjectInfo, ObjectStore, Upload
from .s3 import S3Store, open_store

__all__ = ["MultipartWriter", "ObjectInfo", "ObjectStore", "S3Store", "Upload", "open_store"]
