from olvm_backup.runtime import run_service

from .main import main

run_service("api", main)
