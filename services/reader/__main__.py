from olvm_backup.runtime import run_service

from .reader import main

run_service("reader", main)
