"""The scheduler's clock: real time, or a simulated one that every instance reads alike."""
from __future__ import annotations

from datetime import datetime, timezone

from olvm_backup.config import SchedulerSettings
from services.scheduler.clock import Clock

START = datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp()


class Real:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_without_a_start_it_is_real_time():
    real = Real(1_700_000_000.0)
    clock = Clock(real=real)
    real.t += 42
    assert clock.timestamp() == 1_700_000_042.0 and not clock.simulated and clock.speed == 1.0


def test_simulated_time_runs_speed_times_faster_from_the_epoch():
    real = Real(1000.0)
    clock = Clock(START, 1440.0, epoch=1000.0, real=real)
    assert clock.now() == datetime(2024, 3, 1, tzinfo=timezone.utc)
    real.t += 60  # a real minute: a simulated day
    assert clock.now() == datetime(2024, 3, 2, tzinfo=timezone.utc)
    assert clock.real_seconds(3600) == 2.5


def test_two_instances_started_apart_agree_given_the_same_epoch():
    real = Real(1000.0)
    first = Clock(START, 60.0, epoch=1000.0, real=real)
    real.t += 17.5
    second = Clock(START, 60.0, epoch=1000.0, real=real)
    assert first.timestamp() == second.timestamp() == START + 60 * 17.5


def test_settings_take_iso_or_unix_seconds():
    real = Real(5000.0)
    clock = Clock.from_settings(SchedulerSettings(clock_start="2024-03-01T00:00:00", clock_speed=2.0,
                                                  clock_epoch="4000"), real=real)
    assert clock.timestamp() == START + 2000.0
    assert Clock.from_settings(SchedulerSettings(), real=real).timestamp() == 5000.0
