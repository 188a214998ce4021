"""The two test tiers (docs/testing.md): a test is slow by what it uses, and the fast tier's guard fails
a test that trains, starts a process or runs long without being found slow.

Each test runs pytest on a few small test files with this directory's conftest.py, in a child process
(which makes these tests slow themselves, by the same rule).
"""

import subprocess
import sys
import textwrap
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")
INI = """[pytest]
addopts = -m "not slow" -p no:cacheprovider -p no:xdist
markers =
    slow: the slow tier
    e2e: the real model
"""


def run_pytest(folder: Path, tests: str, conftest: str | None = None) -> str:
    (folder / "pytest.ini").write_text(INI, encoding="utf-8")
    (folder / "conftest.py").write_text(conftest or CONFTEST.read_text(encoding="utf-8"), encoding="utf-8")
    (folder / "test_sample.py").write_text(textwrap.dedent(tests), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", str(folder)], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


def test_a_test_is_slow_by_what_its_code_fixtures_and_helpers_use(tmp_path):
    out = run_pytest(tmp_path, """
        import subprocess
        import sys

        import pytest


        def start_child():
            return subprocess.run([sys.executable, "-c", "pass"]).returncode


        @pytest.fixture
        def child():
            return start_child()


        def test_starts_a_process():
            subprocess.run([sys.executable, "-c", "pass"])


        def test_through_a_fixture_and_a_helper(child):
            pass


        def test_a_browser_named_in_a_string():
            pytest.importorskip("playwright.sync_api")


        @pytest.mark.e2e
        def test_marked():
            pass


        def test_pure_logic():
            assert sorted([2, 1]) == [1, 2]
        """)
    assert "1 passed, 4 deselected" in out, out


def test_the_guard_fails_a_fast_test_that_starts_a_process_or_trains(tmp_path):
    out = run_pytest(tmp_path, """
        import os

        import torch


        def test_shell():
            os.system("true")


        def test_trains():
            weight = torch.nn.Parameter(torch.zeros(1))
            optimizer = torch.optim.SGD([weight], lr=0.1)
            (weight * 2).sum().backward()
            optimizer.step()


        def test_pure_logic():
            assert torch.zeros(2).sum() == 0
        """)
    assert "2 failed, 1 passed" in out, out
    assert "this fast-tier test started a process (os.system" in out, out
    assert "this fast-tier test ran an optimizer step (a training)" in out, out
    assert "Mark it slow" in out, out


def test_the_guard_fails_a_fast_test_over_its_cpu_limit(tmp_path):
    conftest = CONFTEST.read_text(encoding="utf-8")
    assert "FAST_CPU_LIMIT_S = 30.0" in conftest
    out = run_pytest(tmp_path, """
        import time


        def test_busy():
            started = time.process_time()
            while time.process_time() - started < 0.5:
                pass


        def test_quick():
            pass
        """, conftest.replace("FAST_CPU_LIMIT_S = 30.0", "FAST_CPU_LIMIT_S = 0.2"))
    assert "1 failed, 1 passed" in out and "FAILED test_sample.py::test_busy" in out, out
    assert "s of CPU (limit 0.2 s)" in out, out
