"""timm models and checkpoints: create, save and load them the same way in every stage.

One checkpoint format is written (``endoctl-ckpt/1``, see :func:`save_checkpoint`); three are read
for inference (:func:`load_for_inference`), because the weights that matter may come from
elsewhere:

* **endoctl** checkpoints: everything needed to predict is inside (model name, image size, timm
  data config, class mapping and display names);
* **plain timm weights** (``.safetensors``/``.pth``/``.bin`` state dict, or a timm ``train.py``
  checkpoint) plus a ``class_mapping.json``: the model name comes from the caller (``arch`` in a
  timm training checkpoint also works), the head size from the mapping, the image size from the
  position embedding;
* the **seed paper's PyTorch-Lightning checkpoints**: ``state_dict`` with ``backbone.<timm key>``
  and ``classifier.linear.{weight,bias}``, mapped onto the timm model's own classifier.

Checkpoints are read with ``torch.load(weights_only=True)``. A Lightning checkpoint whose
``hyper_parameters`` hold objects of packages that are not installed (Lightning's own dict types,
config objects) falls back to an unpickler that rebuilds only tensors and plain containers and
turns every other class into an inert placeholder: no code from the file is ever run, and
Lightning does not need to be installed.

Nothing here downloads: ``pretrained=True`` is passed to timm only together with a local file.
"""

from __future__ import annotations

import json
import math
import pickle
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from endoctl.io import atomic_open

CKPT_FORMAT = "endoctl-ckpt/1"
CKPT_PREFIX = "endoctl-ckpt/"
LIGHTNING_PREFIX = "backbone."  # the seed paper's Lightning module keeps the timm model under this name
# Keys of a Lightning ``hyper_parameters`` dict that may name the timm model / the classes.
MODEL_NAME_KEYS = (
    "model_name",
    "timm_model",
    "backbone_name",
    "backbone",
    "arch",
    "architecture",
    "model",
    "encoder_name",
    "encoder",
    "name",
)
CLASS_NAME_KEYS = ("class_names", "classes", "class_labels", "labels")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, CPU) and what is needed to feed and read it."""

    model: nn.Module
    class_names: list[str]  # display names, in output index order
    data_config: dict[str, Any]  # timm data config: input_size, mean, std, interpolation, crop_pct, ...
    model_name: str
    source_format: str = "endoctl"  # endoctl | timm | lightning


# ---------------------------------------------------------------------------------------------
# Classes


def validate_class_mapping(mapping: Mapping[str, Any], where: str = "class mapping") -> dict[str, int]:
    """``{name: index}`` with indices exactly 0..n-1, sorted by index; ``ValueError`` otherwise.

    Output column ``i`` is the model's logit ``i``: a gap or a repeated index would silently
    shift every probability column, so it is refused here once for all loaders.
    """
    if not isinstance(mapping, Mapping) or not mapping:
        raise ValueError(f"{where}: expected a non-empty {{class name: index}} mapping")
    out: dict[str, int] = {}
    for name, index in mapping.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: class names must be non-empty text, got {name!r}")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"{where}: index of {name!r} must be an integer, got {index!r}")
        out[name] = index
    if sorted(out.values()) != list(range(len(out))):
        raise ValueError(f"{where}: indices must be 0..{len(out) - 1}, each once; got {sorted(out.values())}")
    return dict(sorted(out.items(), key=lambda item: item[1]))


def read_class_mapping(path: str | Path) -> dict[str, int]:
    """Read a split's ``class_mapping.json`` (``{"class": index}``), validated."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"class mapping not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"class mapping {path} is not valid JSON: {exc}") from None
    return validate_class_mapping(raw, f"class mapping {path}")


def display_names(class_mapping: Mapping[str, int]) -> list[str]:
    """Display names in index order: a taxonomy target's spelling when the mapping is that target's.

    Split folders store lower-case keys (``Target.class_mapping``); submissions need the target's
    own spelling and order ("Foreign Body"). A mapping that is no target's keeps its keys.
    """
    from endoctl.taxonomy import load_taxonomy

    mapping = validate_class_mapping(class_mapping)
    for target in load_taxonomy().targets.values():
        if target.class_mapping() == mapping:
            return list(target.classes)
    return list(mapping)


# ---------------------------------------------------------------------------------------------
# Creating models


def _check_model_name(model_name: str) -> None:
    import timm

    if not model_name or not timm.is_model(model_name.split(".")[0]):
        raise ValueError(f"unknown timm model {model_name!r} (see timm.list_models())")


def create_model(
    model_name: str,
    num_classes: int,
    img_size: int | None = None,
    drop_path_rate: float = 0.0,
    pretrained_file: str | Path | None = None,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> nn.Module:
    """A timm model, randomly initialised, from a local weights file or from ``state_dict``; never downloads.

    The weights go through timm's own loader (``pretrained_cfg_overlay=dict(file=...)`` or
    ``state_dict=...``) so that position-embedding resampling for another ``img_size`` and dropping a
    head of another size are timm's, not a copy of them. Models without an ``img_size`` argument
    (CNNs) ignore it.
    """
    import timm

    _check_model_name(model_name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_path_rate": drop_path_rate}
    if pretrained_file is not None:
        pretrained_file = Path(pretrained_file)
        if not pretrained_file.is_file():
            raise FileNotFoundError(f"pretrained weights file not found: {pretrained_file}")
        # source='' keeps timm from preferring the hub; file= is then its highest-priority source.
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file), "source": ""})
    elif state_dict is not None:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"state_dict": dict(state_dict), "source": ""})
    else:
        kwargs["pretrained"] = False
    if img_size is not None:
        try:
            return timm.create_model(model_name, img_size=img_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(model_name, **kwargs)


def data_config_for(model: nn.Module, img_size: int | None = None) -> dict[str, Any]:
    """timm's eval data config of ``model``, with ``input_size`` set to ``img_size`` when given.

    ``resolve_data_config`` reads the pretrained config (224 for EVA-02) even when the model was
    built for another size, so the size is set here explicitly.
    """
    from timm.data import resolve_data_config

    config = dict(resolve_data_config(model=model))
    if img_size is not None:
        config["input_size"] = (3, int(img_size), int(img_size))
    return {key: (tuple(value) if isinstance(value, list) else value) for key, value in config.items()}


def num_outputs(model: nn.Module) -> int | None:
    """Number of logits, when the model says (timm's ``num_classes``)."""
    value = getattr(unwrap(model), "num_classes", None)
    return int(value) if isinstance(value, int) else None


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under ``torch.compile`` / DDP wrappers (their state-dict keys differ)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or (
            getattr(model, "module", None) if type(model).__name__ == "DistributedDataParallel" else None
        )
        if inner is None:
            return model
        model = inner


# ---------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    model_name: str,
    class_mapping: Mapping[str, int],
    img_size: int | None = None,
    data_config: Mapping[str, Any] | None = None,
    class_names: list[str] | None = None,
    **training_state: Any,
) -> None:
    """Write an ``endoctl-ckpt/1`` checkpoint atomically (an interrupted save keeps the old file).

    ``training_state`` (optimizer, scheduler, scaler, ema, epoch, rng, params, ...) is stored
    beside the weights for resuming; inference ignores it.
    """
    mapping = validate_class_mapping(class_mapping)
    names = list(class_names) if class_names is not None else display_names(mapping)
    if len(names) != len(mapping):
        raise ValueError(f"{len(names)} class names for {len(mapping)} classes")
    outputs = num_outputs(model)
    if outputs is not None and outputs != len(mapping):
        raise ValueError(f"model has {outputs} outputs but the class mapping has {len(mapping)} classes")
    reserved = {"format", "model_name", "img_size", "data_config", "class_mapping", "class_names", "state_dict"}
    clash = sorted(reserved & set(training_state))
    if clash:
        raise ValueError(f"training state may not use reserved key(s) {clash}")
    plain = unwrap(model)
    config = dict(data_config) if data_config is not None else data_config_for(plain, img_size)
    if img_size is None:
        img_size = int(config["input_size"][-1])
    payload = {
        "format": CKPT_FORMAT,
        "model_name": model_name,
        "img_size": int(img_size),
        "data_config": config,
        "class_mapping": mapping,
        "class_names": names,
        "state_dict": {k: v.detach().cpu() for k, v in plain.state_dict().items()},
        **training_state,
    }
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


# ---------------------------------------------------------------------------------------------
# Reading


class _Placeholder(dict):
    """Stands in for a class that is not rebuilt (unknown package, or not safe): keeps its data.

    A dict subclass so that pickled dict subclasses (Lightning's AttributeDict) keep their items;
    constructor arguments and pickled state are kept in ``args`` / ``state`` for inspection.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        return dict.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __reduce__(self) -> Any:  # never re-pickled meaningfully
        return (dict, (dict(self),))


# Modules whose functions a pickle names only to run code (os.system, eval, subprocess.Popen, ...):
# such a file is no checkpoint and is refused outright rather than loaded with placeholders.
UNSAFE_MODULES = frozenset(
    {"builtins", "os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "importlib", "runpy", "pickle",
     "marshal", "ctypes", "code", "pty", "webbrowser", "torch.hub", "timm.models._hub"}
)  # fmt: skip


class UnsafePickle(pickle.UnpicklingError):
    """The file names a function that would run code when unpickled."""


class _TolerantUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers (torch's weights-only allow-list); all else -> placeholder,
    except :data:`UNSAFE_MODULES`, which are refused."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals()
        key = f"{module}.{name}"
        if key in allowed:
            return allowed[key]
        if module.split(".")[0] in UNSAFE_MODULES or module in UNSAFE_MODULES:
            raise UnsafePickle(f"it would call {key} when loaded")
        return type(name, (_Placeholder,), {"__module__": f"placeholder:{module}"})


def _allowed_globals() -> dict[str, Any]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return dict(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - private torch API: fall back to the essentials
        import collections

        import torch._utils

        return {
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
            "torch.Size": torch.Size,
        }


_tolerant_pickle = types.ModuleType("endoctl_tolerant_pickle")
_tolerant_pickle.Unpickler = _TolerantUnpickler  # type: ignore[attr-defined]
_tolerant_pickle.load = lambda fh, **kw: _TolerantUnpickler(fh, **kw).load()  # type: ignore[attr-defined]
_tolerant_pickle.__dict__["UnpicklingError"] = pickle.UnpicklingError


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none (torch.load of an empty file)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__ + (" (empty file)" if isinstance(exc, EOFError) else "")


def read_weights(path: str | Path, tolerant: bool = True) -> Any:
    """The raw object in a checkpoint or weights file, on CPU, without running code from it.

    ``tolerant``: when torch's weights-only loader refuses a class, retry with placeholders for
    such objects (module docstring). Pass False where every object must come back as saved
    (resuming training state): the refusal then is the error.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # noqa: BLE001 - any parse failure is one clear message
            raise ValueError(f"cannot read {path} as safetensors: {_first_line(exc)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not tolerant:
            raise ValueError(f"cannot read {path} with torch.load(weights_only=True): {_first_line(exc)}") from None
        # objects outside torch's allow-list (e.g. Lightning hyper_parameters): placeholders below
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {_first_line(exc)}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    except UnsafePickle as exc:
        raise ValueError(f"refusing {path}: an unsafe pickle, not a checkpoint ({exc})") from None
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {_first_line(exc)}") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a prefix shared by every key that only wrappers add (DDP ``module.``, compile's ``_orig_mod.``)."""
    out = dict(state_dict)
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                changed = True
    return out


def _infer_img_size(state_dict: Mapping[str, torch.Tensor]) -> int | None:
    """Square input size from a ViT position embedding (+ patch size), or None (e.g. CNNs)."""
    pos, proj = state_dict.get("pos_embed"), state_dict.get("patch_embed.proj.weight")
    if pos is None or proj is None or pos.ndim != 3 or proj.ndim != 4:
        return None
    prefix = int("cls_token" in state_dict) + (
        int(state_dict["reg_token"].shape[1]) if "reg_token" in state_dict else 0
    )
    for tokens in (pos.shape[1] - prefix, pos.shape[1]):  # with / without embedded prefix tokens
        side = math.isqrt(max(tokens, 0))
        if tokens > 0 and side * side == tokens:
            return side * int(proj.shape[-1])
    return None


def _find_text(obj: Any, keys: tuple[str, ...], accept, depth: int = 0) -> Any:
    """First value under one of ``keys`` (searched breadth-first in nested dicts/placeholders) that ``accept``s."""
    if depth > 6:
        return None
    if isinstance(obj, _Placeholder):
        nested = [dict(obj), getattr(obj, "state", None), *getattr(obj, "args", ())]
    elif isinstance(obj, Mapping):
        for key in keys:
            if key in obj and accept(obj[key]):
                return obj[key]
        nested = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        nested = list(obj)
    else:
        nested = []
    for value in nested:
        if isinstance(value, (Mapping, list, tuple)):
            found = _find_text(value, keys, accept, depth + 1)
            if found is not None:
                return found
    return None


def _timm_name(value: Any) -> bool:
    import timm

    if not isinstance(value, str) or not value.strip():
        return False
    return timm.is_model(value.removeprefix("timm/").split(".")[0])


def _create_with_weights(
    model_name: str, num_classes: int, img_size: int | None, state_dict: Mapping[str, torch.Tensor], where: str
) -> nn.Module:
    """Create ``model_name`` and load ``state_dict`` strictly, condensing torch's long error."""
    model = create_model(model_name, num_classes, img_size=img_size)
    own = model.state_dict()
    shapes = [k for k, v in state_dict.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if shapes:
        raise ValueError(
            f"weights in {where} do not fit {model_name} ({num_classes} classes, img_size {img_size}): "
            f"shape mismatch for {', '.join(shapes[:3])}"
        )
    result = model.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"{len(result.missing_keys)} missing (e.g. {', '.join(result.missing_keys[:3])})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unexpected (e.g. {', '.join(result.unexpected_keys[:3])})")
        raise ValueError(f"weights in {where} do not fit {model_name}: keys " + "; ".join(parts))
    return model.eval()


def _mapping_for(
    num_classes: int | None, class_mapping_json: str | Path | None, found_names: Any, where: str
) -> tuple[dict[str, int], list[str]]:
    if class_mapping_json is not None:
        mapping = read_class_mapping(class_mapping_json)
    elif found_names is not None:
        mapping = {str(name): i for i, name in enumerate(found_names)}
    else:
        raise ValueError(f"{where} does not name its classes: pass --class-mapping (a split's class_mapping.json)")
    if num_classes is not None and num_classes != len(mapping):
        raise ValueError(f"{where} has {num_classes} outputs but the class mapping has {len(mapping)} classes")
    names = display_names(mapping) if class_mapping_json is not None else list(mapping)
    return mapping, names


def load_for_inference(
    path: str | Path,
    class_mapping_json: str | Path | None = None,
    model_name: str | None = None,
    img_size: int | None = None,
) -> LoadedModel:
    """Load any supported checkpoint (module docstring) into an eval-mode CPU model.

    ``ValueError``/``FileNotFoundError`` carry one-line messages for the CLI. Training state in a
    checkpoint is ignored. ``model_name``/``img_size`` override what the file says (or fill in what
    it cannot say); with an endoctl checkpoint, a given ``class_mapping_json`` must match its own.
    """
    path = Path(path)
    if model_name is not None:
        _check_model_name(model_name)
    obj = read_weights(path)
    where = str(path)

    # (1) endoctl checkpoint
    if isinstance(obj, Mapping) and str(obj.get("format", "")).startswith(CKPT_PREFIX):
        if obj["format"] != CKPT_FORMAT:
            raise ValueError(f"{where}: checkpoint format {obj['format']!r} is not supported (reads {CKPT_FORMAT})")
        missing = [k for k in ("model_name", "data_config", "class_mapping", "state_dict") if k not in obj]
        if missing:
            raise ValueError(f"{where}: endoctl checkpoint lacks {', '.join(missing)}")
        mapping = validate_class_mapping(obj["class_mapping"], f"{where} class_mapping")
        if class_mapping_json is not None and read_class_mapping(class_mapping_json) != mapping:
            raise ValueError(
                f"{where}: its classes differ from {class_mapping_json} (checkpoint: {', '.join(mapping)})"
            )
        names = list(obj.get("class_names") or display_names(mapping))
        name = model_name or obj["model_name"]
        size = img_size or obj.get("img_size")
        config = dict(obj["data_config"])
        if img_size is not None:
            config["input_size"] = (3, int(img_size), int(img_size))
        model = _create_with_weights(name, len(mapping), size, _strip_wrappers(obj["state_dict"]), where)
        return LoadedModel(model, names, config, name, "endoctl")

    # (3) Lightning checkpoint of the seed paper: backbone.* + classifier.linear.*
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    if _is_state_dict(inner) and lightning_backbone(_strip_wrappers(inner)) is not None:
        return _load_lightning(obj, _strip_wrappers(inner), class_mapping_json, model_name, img_size, where)

    # (2) plain timm weights, bare or in a timm train.py checkpoint ({'arch', 'state_dict', ...})
    state_dict = None
    if _is_state_dict(obj):
        state_dict = obj
    elif isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                state_dict = obj[key]
                break
    if state_dict is not None:
        state_dict = _strip_wrappers(state_dict)
        arch = obj.get("arch") if isinstance(obj, Mapping) and not _is_state_dict(obj) else None
        name = model_name or (arch if _timm_name(arch) else None)
        if name is None:
            raise ValueError(
                f"{where} holds plain weights without a model name: pass --model-name (e.g. eva02_base_patch14_224)"
            )
        mapping, names = _mapping_for(None, class_mapping_json, None, where)
        size = img_size or _infer_img_size(state_dict)
        model = _create_with_weights(name, len(mapping), size, state_dict, where)
        return LoadedModel(model, names, data_config_for(model, size), name, "timm")

    keys = ", ".join(sorted(map(str, obj))[:20]) if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(
        f"unrecognised checkpoint layout in {where}: top-level keys {keys or '(none)'} (expected an endoctl "
        f"checkpoint, a timm state dict, or a Lightning checkpoint with backbone.*/classifier.linear.* weights)"
    )


def training_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in ``path`` to start training from, read by :func:`read_weights` as predict reads them
    (timm's own ``torch.load(weights_only=True)`` refuses ordinary checkpoints holding a numpy scalar):
    an endoctl checkpoint's ``state_dict``, a seed-paper Lightning backbone, or timm weights (bare or
    under timm's keys, EMA first, as timm picks them)."""
    obj = read_weights(path)
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    if _is_state_dict(inner) and not str(obj.get("format", "")).startswith(CKPT_PREFIX):
        backbone = lightning_backbone(_strip_wrappers(inner))
        if backbone is not None:
            return backbone
    if _is_state_dict(obj):
        return _strip_wrappers(obj)
    if isinstance(obj, Mapping):
        for key in ("state_dict_ema", "model_ema", "state_dict", "model", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                return _strip_wrappers(obj[key])
    keys = ", ".join(sorted(map(str, obj))[:20]) if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"no weights found in {path}: top-level keys {keys or '(none)'}")


def lightning_backbone(state_dict: Mapping[str, Any]) -> dict[str, Any] | None:
    """The timm weights inside a seed-paper Lightning state dict (``backbone.<k>`` -> ``<k>``); None without any."""
    if not any(str(k).startswith(LIGHTNING_PREFIX) for k in state_dict):
        return None
    return {k.removeprefix(LIGHTNING_PREFIX): v for k, v in state_dict.items() if k.startswith(LIGHTNING_PREFIX)}


def _load_lightning(
    obj: Mapping[str, Any],
    state_dict: dict[str, torch.Tensor],
    class_mapping_json: str | Path | None,
    model_name: str | None,
    img_size: int | None,
    where: str,
) -> LoadedModel:
    """Map ``backbone.<k>`` -> ``<k>`` and ``classifier.linear.*`` -> the timm model's classifier."""
    from timm.models import get_pretrained_cfg

    hparams = obj.get("hyper_parameters", {})
    found = _find_text(hparams, MODEL_NAME_KEYS, _timm_name)
    name = model_name or (found.removeprefix("timm/") if found else None)
    if name is None:
        raise ValueError(f"{where}: the Lightning checkpoint does not name its timm model: pass --model-name")
    head_w = state_dict.get("classifier.linear.weight", state_dict.get("classifier.weight"))
    head_b = state_dict.get("classifier.linear.bias", state_dict.get("classifier.bias"))
    if head_w is None:
        heads = sorted({k.rsplit(".", 1)[0] for k in state_dict if not k.startswith(LIGHTNING_PREFIX)})
        raise ValueError(
            f"{where}: Lightning checkpoint without classifier.linear.weight (non-backbone "
            f"modules: {', '.join(heads) or 'none'})"
        )
    backbone = _strip_wrappers(lightning_backbone(state_dict) or {})
    cfg = get_pretrained_cfg(name.removeprefix("timm/").split(".")[0])
    classifier = (cfg.classifier if cfg is not None else None) or "head"
    classifier = classifier[0] if isinstance(classifier, (list, tuple)) else classifier
    for key in [k for k in backbone if k.startswith(classifier + ".")]:
        del backbone[key]  # a backbone head left in place (e.g. num_classes=0 Identity has none)
    backbone[f"{classifier}.weight"] = head_w
    if head_b is not None:
        backbone[f"{classifier}.bias"] = head_b
    found_names = _find_text(
        hparams,
        CLASS_NAME_KEYS,
        lambda v: isinstance(v, (list, tuple)) and len(v) == head_w.shape[0] and all(isinstance(x, str) for x in v),
    )
    mapping, names = _mapping_for(int(head_w.shape[0]), class_mapping_json, found_names, where)
    size = img_size or _infer_img_size(backbone)
    model = _create_with_weights(name, len(mapping), size, backbone, where)
    return LoadedModel(model, names, data_config_for(model, size), name, "lightning")
