"""Models from elsewhere: torchvision:NAME, timm:NAME and hf:ORG/NAME (built from a local config,
no weights). Each package is imported only when asked for, with a clear error if it does not import."""
from __future__ import annotations

import importlib

from effkit.errors import UserInputError, choices_hint


def _need(package: str, spec: str):
    try:
        return importlib.import_module(package)
    except Exception as e:  # ImportError, or a broken install (torchvision against another torch)
        raise UserInputError(f"{spec!r} needs the {package} package, which does not import here: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e


def build_external(prefix: str, name: str, resolution=None, seq_len=None, **kwargs):
    from effkit.models.registry import BuiltModel, declared_input_shape

    spec = f"{prefix}:{name}"
    if prefix == "torchvision":
        tv = _need("torchvision", spec)
        names = tv.models.list_models()
        if name not in names:
            raise UserInputError(f"torchvision has no model {name!r}{choices_hint(name, names)}")
        model = tv.models.get_model(name, weights=None, **kwargs)
        crop = 224
        try:  # the default weights' evaluation crop, where torchvision states one
            crop = tv.models.get_model_weights(name).DEFAULT.transforms().crop_size[0]
        except Exception:  # noqa: BLE001 - models without weights metadata keep 224
            pass
        r = resolution or crop
        return BuiltModel(model, spec, (3, r, r), "torchvision")
    if prefix == "timm":
        timm = _need("timm", spec)
        if not timm.is_model(name):
            raise UserInputError(f"timm has no model {name!r}{choices_hint(name, timm.list_models())}")
        model = timm.create_model(name, pretrained=False, **kwargs)
        shape = declared_input_shape(model) or (3, 224, 224)
        if resolution:
            shape = (shape[0], resolution, resolution)
        return BuiltModel(model, spec, shape, "timm")
    # hf: a transformers model built from its config, found locally (no download, no weights)
    tr = _need("transformers", spec)
    try:
        config = tr.AutoConfig.from_pretrained(name, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - not in the local cache, or not a config
        raise UserInputError(f"no local config for {spec!r} (effkit never downloads): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    task = kwargs.pop("task", None)
    if kwargs:
        raise UserInputError(f"{spec!r}: builder arguments {sorted(kwargs)} are not used for hf: models; it takes --task, --seq-len, --resolution")
    model = getattr(tr, hf_class(config, task, spec)).from_config(config)
    if getattr(config, "image_size", None) and getattr(config, "num_channels", None):
        r = resolution or (config.image_size if isinstance(config.image_size, int) else config.image_size[0])
        return BuiltModel(model, spec, (config.num_channels, r, r), "hf")
    length = seq_len or min(getattr(config, "max_position_embeddings", 512) or 512, 512)
    return BuiltModel(model, spec, (length,), "hf", vocab_size=config.vocab_size)


HF_TASKS = {"base": "AutoModel", "causal-lm": "AutoModelForCausalLM", "masked-lm": "AutoModelForMaskedLM",
            "seq2seq-lm": "AutoModelForSeq2SeqLM", "sequence-classification": "AutoModelForSequenceClassification",
            "token-classification": "AutoModelForTokenClassification", "question-answering": "AutoModelForQuestionAnswering",
            "image-classification": "AutoModelForImageClassification"}
_ARCH_SUFFIX = {"ForCausalLM": "causal-lm", "LMHeadModel": "causal-lm", "ForMaskedLM": "masked-lm", "ForConditionalGeneration": "seq2seq-lm",
                "ForSequenceClassification": "sequence-classification", "ForTokenClassification": "token-classification",
                "ForQuestionAnswering": "question-answering", "ForImageClassification": "image-classification"}


def hf_task(config) -> str:
    """The task a user would run this config for: what its `architectures` name (e.g. LlamaForCausalLM -> causal-lm),
    else the base model."""
    for arch in getattr(config, "architectures", None) or ():
        for suffix, task in _ARCH_SUFFIX.items():
            if arch.endswith(suffix):
                return task
    return "base"


def hf_class(config, task: str | None, spec: str) -> str:
    """The transformers Auto class for `task` (default: the config's own, see hf_task)."""
    task = task or hf_task(config)
    if task not in HF_TASKS:
        raise UserInputError(f"unknown --task {task!r} for {spec!r}; choose one of: {', '.join(HF_TASKS)}")
    return HF_TASKS[task]


def timm_test_size(name: str) -> int | None:
    """The input size timm's own benchmark tables use for `name` (its pretrained config's test_input_size, else its
    input_size), or None where timm is not installed or states none."""
    try:
        import timm
    except ImportError:
        return None
    try:
        cfg = timm.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - a name without a pretrained config
        cfg = None
    if cfg is None:
        return None
    size = getattr(cfg, "test_input_size", None) or getattr(cfg, "input_size", None)
    return int(size[-1]) if size else None
