"""The periodic jobs of `aifinops serve` (collect now; budget checks and recommendations
later), run in one background thread: one job at a time, so never two runs of a kind at
once; each job's last run, duration and error kept for `/api/v1/jobs`.

A job is a function that does its work and returns a one-line summary, or raises. Stopping
(`stop`) lets the job in progress finish (each job's writes are transactions of their own,
so it never leaves anything half-written) and runs nothing more."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aifinops.core.windows import iso_z

log = logging.getLogger("aifinops.scheduler")


@dataclass
class Job:
    name: str
    every_s: float
    work: Callable[[], str | None]
    runs: int = 0
    failures: int = 0
    running: bool = False
    last_start: datetime | None = None
    last_duration_s: float | None = None
    last_result: str | None = None
    last_error: str | None = None
    due: float = 0.0  # monotonic time of the next run

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "every_seconds": self.every_s,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "last_start": iso_z(self.last_start),
            "last_duration_seconds": self.last_duration_s,
            "last_result": self.last_result,
            "last_error": self.last_error,
        }


class Scheduler:
    def __init__(self, jobs: list[Job], *, tick_s: float = 1.0):
        self.jobs = {j.name: j for j in jobs}
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.jobs:
            self._thread = threading.Thread(target=self._loop, name="aifinops-jobs", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the loop to stop, let the job in progress finish; False if it did not
        finish within `timeout` seconds (the process then exits without it: its write is
        a transaction, so the store keeps what was there before)."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run_due(self) -> list[str]:
        """Run every job that is due, one after the other; the names run."""
        ran = []
        for job in self.jobs.values():
            if self._stop.is_set():
                break
            if time.monotonic() >= job.due:
                self.run(job)
                ran.append(job.name)
        return ran

    def run(self, job: Job) -> None:
        """Run `job` once. A job that finds nothing to do returns None: that is not a run
        (its last run stays the one that did something)."""
        job.running = True
        at, started = datetime.now(UTC), time.monotonic()
        error: str | None = None
        try:
            result = job.work()
        except Exception as failed:  # a failing job must not stop the others
            result, error = None, f"{type(failed).__name__}: {failed}"
            log.warning("job %s failed: %s", job.name, error)
        finally:
            job.running = False
            job.due = time.monotonic() + job.every_s
        if result is None and error is None:
            return
        job.runs += 1
        job.failures += error is not None
        job.last_start, job.last_result, job.last_error = at, result, error
        job.last_duration_s = round(time.monotonic() - started, 3)

    def status(self) -> list[dict[str, Any]]:
        return [j.status() for j in self.jobs.values()]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_due()
            self._stop.wait(self.tick_s)
