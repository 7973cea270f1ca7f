"""As a new user tries it: build a wheel of this checkout, install it into a fresh virtual
environment, and run the README's example test in a project of its own. It passes through
the installed ``pytest11`` entry point alone (no conftest, no import of the plugin).

About a minute (pip resolves the wheel's dependencies; its cache makes that quick after once).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = re.compile(r"<!-- plugin-example -->\n```python\n(.*?)```", re.DOTALL)


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_fresh_project_tests_its_client_with_the_installed_fixture(tmp_path: Path) -> None:
    example = EXAMPLE.search((REPO / "README.md").read_text(encoding="utf-8"))
    assert example is not None, "the README lost its plugin example"
    assert len(example.group(1).strip().splitlines()) <= 12  # "a ten-line test"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    wheels = tmp_path / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        tmp_path,
        env,
    )
    (wheel,) = wheels.glob("jwt_desktop-*.whl")

    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", str(wheel), "pytest", "requests"], tmp_path, env)

    project = tmp_path / "someone-elses-project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_client.py").write_text(example.group(1), encoding="utf-8")
    output = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers", "-W", "error"],
        project,
        env,
    )
    assert "1 passed" in output
