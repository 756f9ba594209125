"""The README's two set-up commands stay true: CI runs the test one; the main one names a real model."""
import re
from pathlib import Path

from effkit.models import get_entry

ROOT = Path(__file__).resolve().parents[1]


def commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(\(command -v chromium.*?|python3 -m venv .*?)\n```", text)[:2]


def test_ci_runs_the_readme_test_command():
    main, tests = commands()
    assert "pytest" in tests and tests in (ROOT / ".ci/run").read_text()
    assert "torch==2.13.0" in main and "torch==2.13.0" in tests


def test_main_command_names_a_zoo_model():
    main, _ = commands()
    model = re.search(r"effkit (?:trace|profile) (\S+)", main).group(1)
    assert get_entry(model)
