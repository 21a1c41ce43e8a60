"""The Hugging Face Hub, where the toolkit meets it: folders named by Hub id, and uploads.

Wherever a model, adapter, merged model, activations folder or crosscoder is accepted, a Hub id works as well as
a folder (the PoT-distillation and crosscoder study downloads its adapter and merged model by id).
:func:`local_folder` makes a local folder of either: the folder itself, or the repository's snapshot, from the
Hugging Face cache or downloaded; offline or unreachable, one line says what to do. A model id that
``from_pretrained`` takes as it is stays an id (:func:`model_source`); an adapter id becomes its snapshot, so
that its ``adapter_config.json`` is read like a local adapter's.

:func:`push_folder` uploads a folder as the root of a repository: ``scripts/merge_lora.py --push_to_hub`` and the
driver's ``--push_to_hub`` both push a model folder this way (a merged model, or a run's ``final_model/``:
an adapter or a full model), so both repositories load with ``from_pretrained`` and here by id.
"""

from __future__ import annotations

from pathlib import Path

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.source import ADAPTER_CONFIG, is_hub_id, one_line


def local_folder(name_or_path: str, flag: str, *, repo_type: str = "model", hint: str = "") -> Path:
    """``name_or_path`` as a local path: itself when it exists (a folder, or a file in one), else the snapshot
    folder of the Hub repository of that id (``repo_type`` model or dataset), from the cache or downloaded.
    :class:`UsageError` naming ``flag`` (and ending with ``hint``, what makes one)."""
    path = Path(name_or_path).expanduser()
    if path.exists() or not is_hub_id(name_or_path):
        if not path.exists():
            raise UsageError(f"{flag} {name_or_path}: no such folder (and not a Hugging Face Hub id)"
                             + (f": {hint}" if hint else ""))
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(name_or_path, repo_type=repo_type))
    except RepositoryNotFoundError:
        raise UsageError(f"{flag} {name_or_path}: no such local folder, and no such {repo_type} repository on the "
                         "Hugging Face Hub (or it is private: log in with `hf auth login` or HF_TOKEN)") from None
    except LocalEntryNotFoundError:
        raise UsageError(f"{flag} {name_or_path}: no such local folder, and not in the Hugging Face cache while the "
                         "Hub cannot be reached (offline): download it where there is network, or pass a folder"
                         ) from None
    except Exception as error:  # noqa: BLE001 (any transport or Hub failure, said in one line)
        raise UsageError(f"{flag} {name_or_path}: cannot fetch it from the Hugging Face Hub "
                         f"({type(error).__name__}: {one_line(error)})") from None


def model_source(name_or_path: str, flag: str = "--model_name") -> str:
    """What to load for a model flag: a local folder as it is; a Hub id of an adapter as its local snapshot (so
    its base model is read from its ``adapter_config.json``); any other Hub id unchanged, for ``from_pretrained``."""
    if Path(name_or_path).expanduser().exists() or not is_hub_id(name_or_path):
        return name_or_path
    from huggingface_hub import file_exists, try_to_load_from_cache

    cached = try_to_load_from_cache(name_or_path, ADAPTER_CONFIG)
    try:
        adapter = isinstance(cached, str) or file_exists(name_or_path, ADAPTER_CONFIG)
    except Exception:  # noqa: BLE001 (offline or unreachable: check_model_source says so for a model id)
        adapter = False
    return str(local_folder(name_or_path, flag)) if adapter else name_or_path


def check_hub_access(flag: str = "--push_to_hub") -> str:
    """The logged-in Hugging Face user name; :class:`UsageError` when there is no token or no network."""
    from huggingface_hub import whoami

    try:
        return whoami()["name"]
    except Exception as error:  # noqa: BLE001 (no token, offline mode, no network: all mean the same here)
        raise UsageError(f"{flag} needs a Hugging Face login and network access ({type(error).__name__}: "
                         f"{one_line(error)}). Log in (`hf auth login`), or run without {flag}.") from None


def push_folder(folder: str | Path, repo_id: str, *, private: bool = True) -> str:
    """Upload a model folder as the root of the repository ``repo_id`` (made if needed); its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id)
    return str(url)
