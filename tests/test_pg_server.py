"""tests/pg_server.py's server_lock: tests share the PostgreSQL server, and a test that restarts it waits for them
all to let go, and keeps them out until it does (on a lock file of its own here, not the suite's)."""

import threading

from pg_server import lock_file, server_lock

URL = "postgresql://u:p@127.0.0.1:54329/db"


def _hold(path, exclusive, entered: threading.Event, release: threading.Event):
    with server_lock(exclusive, path):
        entered.set()
        release.wait(30)


def _start(path, exclusive):
    entered, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=_hold, args=(path, exclusive, entered, release), daemon=True)
    thread.start()
    return thread, entered, release


def test_tests_share_the_server_and_a_restart_waits_for_them(tmp_path):
    path = tmp_path / "pg.lock"
    first, first_in, first_out = _start(path, exclusive=False)
    assert first_in.wait(10)
    second, second_in, second_out = _start(path, exclusive=False)
    assert second_in.wait(10)  # two tests on the server at once
    restart, restart_in, restart_out = _start(path, exclusive=True)
    assert not restart_in.wait(0.3)  # not while either holds it
    first_out.set()
    first.join(10)
    assert not restart_in.wait(0.3)
    second_out.set()
    second.join(10)
    assert restart_in.wait(10)  # once both let go
    late, late_in, late_out = _start(path, exclusive=False)
    assert not late_in.wait(0.3)  # and no test starts on it mid-restart
    restart_out.set()
    assert late_in.wait(10)
    late_out.set()
    for thread in (restart, late):
        thread.join(10)


def test_each_server_has_its_own_lock_file():
    assert lock_file(URL) != lock_file(URL.replace("54329", "5432"))
    assert lock_file(URL) == lock_file("postgresql://other@127.0.0.1:54329/other_db")
