from olvm_backup.runtime import run_service

from .main import main

# Restores hold windows of megabyte chunks: map large buffers so freed ones leave the resident set.
run_service("restorer", main, mmap_threshold=256 * 1024)
