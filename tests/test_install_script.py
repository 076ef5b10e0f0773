"""`make test` runs scripts/install-system-deps.sh: it must leave every other process alone
(a user's own Prometheus, a parallel test run's) — it installs, it never stops or kills."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install-system-deps.sh"
NAMES = ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter")


@pytest.fixture
def decoys(tmp_path):
    """Processes named like the packages' daemons, as `pkill -x` would see them."""
    sleep = shutil.which("sleep")
    procs = []
    for name in NAMES:
        binary = tmp_path / "decoys" / name
        binary.parent.mkdir(exist_ok=True)
        shutil.copy(sleep, binary)
        procs.append(subprocess.Popen([str(binary), "300"]))
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def _alive(procs) -> list[str]:
    return [Path(p.args[0]).name for p in procs if p.poll() is None]


def test_the_script_never_names_a_process_to_stop():
    text = "\n".join(line for line in SCRIPT.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\b(pkill|killall|kill|systemctl\s+stop|service\s+\S+\s+stop)\b", text)


def test_an_install_leaves_processes_with_the_packages_names_running(tmp_path, decoys):
    # A PATH without the packages, so the script goes all the way to `apt-get install`; a
    # recording apt-get stands in for the real one (no package is installed by a test).
    shims = tmp_path / "bin"
    shims.mkdir()
    for tool in ("id", "tee", "chmod", "rm", "sort", "cat"):
        (shims / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "apt-calls"
    (shims / "apt-get").write_text(f'#!{shutil.which("bash")}\necho "$*" >> {calls}\n')
    (shims / "apt-get").chmod(0o755)
    (shims / "sudo").write_text(f'#!{shutil.which("bash")}\nexec "$@"\n')  # when the suite runs unprivileged
    (shims / "sudo").chmod(0o755)
    policy = tmp_path / "policy-rc.d"
    env = {"PATH": str(shims), "HOME": str(tmp_path), "DRIFTD_POLICY_RC": str(policy)}

    run = subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    installed = calls.read_text()
    assert "update" in installed and re.search(r"install .*prometheus .*prometheus-alertmanager", installed)
    assert _alive(decoys) == list(NAMES), "the install stopped a process it did not start"
    assert not policy.exists(), "the temporary no-daemons policy must be removed"


def test_with_everything_installed_the_script_does_nothing(decoys):
    if any(shutil.which(tool) is None for tool in ("prometheus", "promtool", "prometheus-alertmanager", "amtool", "docker-compose")):
        pytest.fail("the system packages are missing: run `make system-deps` first")
    run = subprocess.run([shutil.which("bash"), str(SCRIPT)], capture_output=True, text=True, timeout=60, env={**os.environ})
    assert run.returncode == 0 and run.stdout == ""
    assert _alive(decoys) == list(NAMES)
