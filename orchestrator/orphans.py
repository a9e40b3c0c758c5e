"""What a driver's local Ray leaves behind when the driver dies, even by SIGKILL, is killed.

Ray's daemons (GCS, raylet) end with the driver that started them, but the agents the raylet starts
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) survive a SIGKILLed driver, orphaned. A driver that starts
a local Ray first starts a watcher (`python -m orchestrator.orphans DRIVER_PID FD`, a session of its own):
it notes every descendant of the driver once a second, and when the driver's end of the pipe closes (the
driver exited, however it died), it waits GRACE_S for Ray's own shutdown and then kills each noted process
still alive (checked by its start time, so a reused pid is never hit). Linux only (`/proc`); elsewhere no
watcher starts.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

WATCH_S = 1.0
GRACE_S = 2.0

_held: list[int] = []  # the driver's end of the watcher's pipe, open until this process ends


def watch_this_driver(repo_root: Path) -> None:
    """Start the watcher of this process's descendants (once per process)."""
    if _held or not Path("/proc/self/stat").exists():
        return
    read_fd, write_fd = os.pipe()
    env = os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (str(repo_root), os.environ.get("PYTHONPATH")) if p)}
    subprocess.Popen(
        [sys.executable, "-m", "orchestrator.orphans", str(os.getpid()), str(read_fd)],
        pass_fds=(read_fd,),
        start_new_session=True,  # a Ctrl-C to the driver's terminal does not stop the watcher first
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(read_fd)
    _held.append(write_fd)


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process, from /proc."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # it ended while we looked
                continue
            fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
            table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(root: int, table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """pid -> start time of every process below `root` in `table`."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found[pid] = table[pid][1]
        stack.extend(children.get(pid, []))
    return found


def watch(driver: int, fd: int) -> None:
    """Note the driver's descendants until `fd` reads end-of-file, then kill those still alive."""
    noted: dict[int, int] = {}
    while not select.select([fd], [], [], WATCH_S)[0]:
        noted |= descendants(driver, process_table())
    noted |= descendants(driver, process_table())  # whatever the driver's death left attached to it
    noted.pop(os.getpid(), None)
    time.sleep(GRACE_S)
    table = process_table()
    for pid, started in noted.items():
        if table.get(pid, (0, None))[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
