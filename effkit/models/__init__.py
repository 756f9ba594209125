"""The model zoo: pure-PyTorch builders equal to their reference implementations."""
from effkit.models.registry import BuiltModel, ModelEntry, build_model, entries, get_entry, list_models, register_model

__all__ = ["BuiltModel", "ModelEntry", "build_model", "entries", "get_entry", "list_models", "register_model"]
