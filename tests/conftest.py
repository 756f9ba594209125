import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*pynvml.*")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def load_bench():
    """load_bench(name): a benchmarks/ script as a module, its folder on sys.path (the scripts import each other) while
    the test module that asked runs."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, f"{folder}/{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    try:
        yield load
    finally:
        sys.path.remove(folder)
