"""The /proc readers the fault tests find their processes with (``tests/processes.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import processes


def test_a_child_and_its_child_are_found_by_parent_command_and_environment():
    # the child names its child only once that one runs Python: until its exec, a new
    # process's /proc entry can read empty (the CI run at ca2d053 caught one so)
    code = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', " \
           "'import time; print(1, flush=True); time.sleep(30)'], stdout=subprocess.PIPE, text=True); " \
           "c.stdout.readline(); print(c.pid, flush=True); time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PAW_PROCESSES_TEST": "yes"})
    try:
        grandchild = int(child.stdout.readline())
        assert processes.parent_of(child.pid) == os.getpid()
        assert processes.parent_of(grandchild) == child.pid
        assert set(processes.descendants(child.pid)) == {child.pid, grandchild}
        assert processes.runs(child.pid, sys.executable) and not processes.runs(child.pid, "ray::")
        assert processes.has_env(grandchild, "PAW_PROCESSES_TEST=yes")  # inherited
        assert not processes.has_env(child.pid, "PAW_PROCESSES_TEST=no")
        assert child.pid in processes.pids() and os.getpid() not in processes.pids()
    finally:
        for pid in processes.descendants(child.pid)[::-1]:
            os.kill(pid, 9)
        child.wait()


def test_a_process_that_is_gone_reads_as_nothing():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    time.sleep(0.05)
    assert processes.parent_of(p.pid) is None and not processes.runs(p.pid, "") and not processes.has_env(p.pid, "A=b")
    assert processes.descendants(p.pid) == [p.pid]
