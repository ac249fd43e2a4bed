from olvm_backup.service import run_service

from .service import main

run_service("writer", main)
