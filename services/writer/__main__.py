from olvm_backup.runtime import run_service

from .writer import main

run_service("writer", main)
