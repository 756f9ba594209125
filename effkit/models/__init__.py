"""The model zoo: pure-PyTorch builders equal to their reference implementations, and ModelRef."""
from effkit.models.ref import ModelRef, resolve
from effkit.models.registry import BuiltModel, ModelEntry, build_model, entries, get_entry, list_models, register_model

__all__ = ["BuiltModel", "ModelEntry", "ModelRef", "build_model", "entries", "get_entry", "list_models", "register_model", "resolve"]
