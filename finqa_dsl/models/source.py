"""Check, in seconds and before anything loads, that a model name can be loaded: a local model or adapter
folder with the files ``from_pretrained`` needs, or a Hub id that is cached or that the Hub answers for.

``from_pretrained`` on an id it cannot fetch retries for tens of seconds and ends in a traceback; here an
id that is not in the Hugging Face cache is refused at once in offline mode (``HF_HUB_OFFLINE=1``) and
otherwise looked up with one request of at most :data:`PROBE_TIMEOUT_S` seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from finqa_dsl.core.errors import UsageError

CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")
PROBE_TIMEOUT_S = 10.0


def check_model_source(name_or_path: str, flag: str = "--model_name") -> None:
    """Raise :class:`UsageError` (one line naming ``flag``, the folder or id and what is missing) unless
    ``name_or_path`` is a loadable model folder, an adapter folder whose base model is loadable, or a Hub id
    that is cached or exists on the Hub."""
    where = f"{flag} {name_or_path}"
    path = Path(name_or_path).expanduser()
    if path.exists():
        _check_folder(path, where, flag)
    elif is_hub_id(name_or_path):
        _check_hub_id(name_or_path, where)
    else:
        raise UsageError(f"{where}: no such model folder (and not a Hugging Face Hub id)")


def _check_folder(path: Path, where: str, flag: str) -> None:
    if not path.is_dir():
        raise UsageError(f"{where}: not a folder (a model is a folder with {CONFIG} and weights, or a Hub id)")
    if not any(path.iterdir()):
        raise UsageError(f"{where}: empty folder (expected {CONFIG}, weights and a tokenizer, or {ADAPTER_CONFIG})")
    adapter = is_adapter_dir(path)
    if adapter:  # its tokenizer may come from the base model
        check_model_source(adapter_base(path), f"{path / ADAPTER_CONFIG}: base_model_name_or_path")
    missing = [what for what, present in (
        (CONFIG, adapter or (path / CONFIG).is_file()),
        (f"weights ({', '.join(WEIGHT_PATTERNS)})", any(any(path.glob(p)) for p in WEIGHT_PATTERNS)),
        (f"tokenizer ({' or '.join(TOKENIZER_FILES)})",
         adapter or any((path / name).is_file() for name in TOKENIZER_FILES)),
    ) if not present]
    if missing:
        raise UsageError(f"{where}: not {'an adapter' if adapter else 'a model'} folder: no {', no '.join(missing)}")


def is_adapter_dir(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` is a folder holding a PEFT ``adapter_config.json``."""
    return (Path(name_or_path) / ADAPTER_CONFIG).is_file()


def adapter_base(adapter_dir: str | os.PathLike) -> str:
    """The ``base_model_name_or_path`` of an adapter folder's ``adapter_config.json``."""
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise UsageError(f"{config_path}: not a readable JSON object ({error})") from None
    if not isinstance(base, str) or not base:
        raise UsageError(f"{config_path}: field 'base_model_name_or_path' is empty; it must name the adapter's "
                         "base model")
    return base


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a Hugging Face Hub repository id (``owner/name``)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _check_hub_id(repo_id: str, where: str) -> None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, is_offline_mode, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RemoteEntryNotFoundError, RepositoryNotFoundError

    if isinstance(try_to_load_from_cache(repo_id, CONFIG), str):
        return
    if is_offline_mode():
        raise UsageError(f"{where}: no such local folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is "
                         "set, so the Hub is not asked): download it where there is network, or pass a folder")
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, CONFIG), timeout=PROBE_TIMEOUT_S)
    except GatedRepoError:
        raise UsageError(f"{where}: a gated model: accept its licence on huggingface.co and log in "
                         "(`hf auth login` or HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise UsageError(f"{where}: no such local folder, and no such model on the Hugging Face Hub (or it is "
                         "private: log in with `hf auth login` or HF_TOKEN)") from None
    except RemoteEntryNotFoundError:
        raise UsageError(f"{where}: the Hub repository has no {CONFIG}: not a transformers model") from None
    except HfHubHTTPError as error:
        raise UsageError(f"{where}: the Hub answered {one_line(error)}") from None
    except Exception as error:  # noqa: BLE001 (any transport failure: no network, DNS, timeout, proxy)
        raise UsageError(f"{where}: no such local folder, not in the Hugging Face cache, and the Hub cannot be "
                         f"reached within {PROBE_TIMEOUT_S:g} s ({type(error).__name__}: {one_line(error)}): "
                         "download the model where there is network, or pass a model folder") from None


def one_line(error: Exception) -> str:
    """An error's message on one line."""
    return " ".join(str(error).split())
