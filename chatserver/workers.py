"""`chatserver serve --workers N`: N hub processes on one machine sharing the port and Redis.

Each worker is a full cluster node (SO_REUSEPORT spreads connections across them); the parent
only supervises: it restarts a worker that crashes and forwards SIGTERM/SIGINT for a drain.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from chatserver.redis_bus import new_node_id
from chatserver.settings import Settings

log = logging.getLogger("chatserver.workers")

RESTART_BACKOFF_MAX_S = 30.0
DRAIN_TIMEOUT_S = 30.0
STABLE_AFTER_S = 60.0  # a worker that lived this long starts its backoff from scratch


def check_settings(settings: Settings, workers: int) -> str | None:
    """Why these settings cannot run `workers` processes, or None if they can."""
    if workers > 1 and not settings.redis_url:
        return (
            f"--workers {workers} needs --redis-url (CHATSERVER_REDIS_URL): the workers are "
            "separate processes and only a shared Redis bus lets a message reach a connection "
            "held by another worker"
        )
    return None


def run_workers(settings: Settings, workers: int) -> int:
    """Start and supervise `workers` processes; returns the exit code for the CLI."""
    problem = check_settings(settings, workers)
    if problem:
        print(f"chatserver: {problem}", file=sys.stderr, flush=True)
        return 2
    if settings.effective_database_url.startswith("sqlite"):
        log.warning(
            "%d workers on one SQLite file take turns writing; use PostgreSQL in production",
            workers,
        )
    base = settings.node_id or new_node_id()
    context = multiprocessing.get_context("spawn")
    procs: dict[int, BaseProcess] = {}
    started: dict[int, float] = {}
    failures: dict[int, int] = {}
    not_before: dict[int, float] = {}
    stopping: list[int] = []

    def start(index: int) -> None:
        worker_settings = settings.replace(node_id=f"{base}-w{index}")
        proc = context.Process(
            target=worker_main, args=(worker_settings, index), name=f"chatserver-w{index}"
        )
        proc.start()
        procs[index] = proc
        started[index] = time.monotonic()
        log.info("worker %d started (pid %s)", index, proc.pid)

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
            log.warning("signal %d: draining %d workers", signum, len(procs))
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(workers):
        start(index)
    drain_deadline = None
    while True:
        time.sleep(0.2)
        now = time.monotonic()
        if stopping:
            drain_deadline = drain_deadline or now + DRAIN_TIMEOUT_S
            alive = [p for p in procs.values() if p.is_alive()]
            if not alive:
                return 0
            if now > drain_deadline:
                for proc in alive:
                    proc.kill()
            continue
        for index, proc in list(procs.items()):
            if proc.is_alive():
                continue
            if index not in not_before:
                lived = now - started[index]
                failures[index] = 0 if lived > STABLE_AFTER_S else failures.get(index, 0) + 1
                delay = (
                    min(RESTART_BACKOFF_MAX_S, 0.5 * 2 ** failures[index])
                    if failures[index]
                    else 0.0
                )
                log.error(
                    "worker %d (pid %s) exited with %s after %.0fs; restarting in %.1fs",
                    index,
                    proc.pid,
                    proc.exitcode,
                    lived,
                    delay,
                )
                not_before[index] = now + delay
            if now >= not_before[index]:
                del not_before[index]
                start(index)


def worker_main(settings: Settings, index: int) -> None:
    """One worker: a complete hub node on the shared port."""
    from aiohttp import web

    from chatserver import logs
    from chatserver.app import create_app, prepare_process

    logs.configure(settings.log_level, settings.log_json)
    # Out of the terminal's process group: Ctrl-C reaches only the parent, which sends each
    # worker one SIGTERM, so no worker sees two shutdown signals.
    os.setpgrp()
    prepare_process()
    web.run_app(
        create_app(settings, announce=index == 0),
        host=settings.host,
        port=settings.port,
        reuse_port=True,
        print=None,
        shutdown_timeout=10,
        access_log=None,
    )
