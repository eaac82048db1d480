"""The Python example of README.md runs as written: its code block, saved as a file and run
with ``python``, against this test's database."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_example() -> str:
    """The first ``python`` code block of the README's section "## Python"."""
    text = README.read_text()
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"^```python\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert found is not None, "no python code block in the README's section Python"
    return found.group(1)


def test_the_readme_python_example_runs_as_written(admin_url: str, tmp_path: Path) -> None:
    code = python_example()
    app = tmp_path / "app.py"
    app.write_text(code)
    # one URL for the worker and the client, as in a developer's set-up (here the superuser)
    env = {**os.environ, "DURABLE_DATABASE_URL": admin_url, "DATABASE_URL": admin_url}
    done = subprocess.run(
        [sys.executable, str(app)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    assert len(printed) == 4, done.stdout
    first, history, forked, replayed = printed
    hits = ["what was found for ... (news)", "what was found for ... (papers)"]
    for output in (first, forked, replayed):
        result = ast.literal_eval(output)
        assert result["hits"] == hits
    events = ast.literal_eval(history)
    assert events[:4] == ["plan", "search", "search", "sleep"] and events[4].startswith("approve:")
    assert events[5:] == ["send_email", "result", "now"]
