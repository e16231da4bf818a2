"""The periodic jobs of `aifinops serve` (collect now; budget checks and recommendations
later), run in one background thread: one job at a time, so never two runs of a kind at
once; each job's last run, duration and error kept for `/api/v1/jobs`.

A job is a function that does its work and returns a one-line summary, or raises. Stopping
(`stop`) lets the job in progress finish (each job's writes are transactions of their own,
so it never leaves anything half-written) and runs nothing more.

Replicas (decision 0021): a `leased` job runs only while this replica holds the jobs'
lease (`JobLease`), taken or renewed each tick and before each such job, and released on
stop; the other jobs (what this process keeps in memory) run on every replica."""

from __future__ import annotations

import logging
import math
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
    leased: bool = True  # runs only on the replica holding the jobs' lease
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
            "leased": self.leased,
            "running": self.running,
            "runs": self.runs,
            "failures": self.failures,
            "last_start": iso_z(self.last_start),
            "last_duration_seconds": self.last_duration_s,
            "last_result": self.last_result,
            "last_error": self.last_error,
        }


class JobLease:
    """This replica's hold on the jobs' lease. `take` asks the store (True where this
    replica holds the lease after taking or renewing it), `release` gives it up. A lease
    held is renewed once a third of its time has passed (by the scheduler's heartbeat
    thread, and before each leased job), so it outlives a missed renewal or two and a job
    longer than itself; one held by another is asked for at most each second. A renewal
    that fails (the store is down) counts as lost: a replica that cannot renew must not go
    on as if it held the lease."""

    def __init__(self, me: str, ttl_s: float, take: Callable[[], bool],
                 release: Callable[[], object]):  # fmt: skip
        self.me, self.ttl_s = me, ttl_s
        self._take, self._release = take, release
        self.held = False
        self.last_error: str | None = None
        self._renewed = self._tried = -math.inf  # monotonic times
        self._lock = threading.Lock()  # the heartbeat and the scheduler ask in turn

    def hold(self) -> bool:
        """Whether this replica holds the lease now, renewing or asking for it when due."""
        with self._lock:
            return self._hold()

    def _hold(self) -> bool:
        now = time.monotonic()
        if self.held and now - self._renewed < self.ttl_s / 3:
            return True
        if not self.held and now - self._tried < min(1.0, self.ttl_s / 4):
            return False
        self._tried = now
        try:
            held = self._take()
            self.last_error = None
        except Exception as failed:  # the store is unreachable: hold nothing
            held, self.last_error = False, f"{type(failed).__name__}: {failed}"
            log.warning("the jobs' lease could not be taken or renewed: %s", self.last_error)
        if held != self.held:
            log.info("replica %s %s the jobs' lease", self.me, "holds" if held else "lost")
        self.held = held
        if held:
            self._renewed = now
        return held

    def release(self) -> None:
        """Give the lease up (on stop), so another replica takes it at once."""
        with self._lock:
            if not self.held:
                return
            self.held = False
        try:
            self._release()
        except Exception as failed:  # it runs out by itself
            log.warning("the jobs' lease could not be released: %s", failed)

    def status(self) -> dict[str, Any]:
        return {"this_replica": self.me, "running_jobs": self.held,
                "ttl_seconds": self.ttl_s, "last_error": self.last_error}  # fmt: skip


class Scheduler:
    def __init__(self, jobs: list[Job], *, tick_s: float = 1.0, lease: JobLease | None = None):
        self.jobs = {j.name: j for j in jobs}
        self.tick_s = tick_s
        self.lease = lease
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._beat: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.jobs:
            self._thread = threading.Thread(target=self._loop, name="aifinops-jobs", daemon=True)
            self._thread.start()
        if self._beat is None and self.lease is not None:
            self._beat = threading.Thread(target=self._heartbeat, name="aifinops-lease",
                                          daemon=True)  # fmt: skip
            self._beat.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the loop to stop, let the job in progress finish; False if it did not
        finish within `timeout` seconds (the process then exits without it: its write is
        a transaction, so the store keeps what was there before)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._beat is not None:
            self._beat.join(timeout)
        if self.lease is not None:
            self.lease.release()
        return self._thread is None or not self._thread.is_alive()

    def run_due(self) -> list[str]:
        """Run every job that is due, one after the other; the names run. A leased job
        waits while another replica holds the lease (the lease is renewed before it)."""
        ran = []
        for job in self.jobs.values():
            if self._stop.is_set():
                break
            if time.monotonic() >= job.due:
                if job.leased and self.lease is not None and not self.lease.hold():
                    continue
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

    def _heartbeat(self) -> None:
        """The lease renewed (or asked for) on time even while a job runs long."""
        assert self.lease is not None
        while not self._stop.wait(min(1.0, self.lease.ttl_s / 6)):
            self.lease.hold()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.lease is not None:
                self.lease.hold()
            self.run_due()
            self._stop.wait(self.tick_s)
