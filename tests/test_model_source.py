"""models.source: a model name that cannot load is refused with one line, after one short Hub request at most,
before anything loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.source import PROBE_TIMEOUT_S, check_model_source

UNKNOWN_ID = "finqa-dsl-tests/no-such-model-3f9c1"


def _model_folder(path: Path, *, config=True, weights=True, tokenizer=True) -> Path:
    path.mkdir(parents=True)
    if config:
        (path / "config.json").write_text("{}")
    if weights:
        (path / "model.safetensors").write_bytes(b"")
    if tokenizer:
        (path / "tokenizer_config.json").write_text("{}")
    return path


def test_a_complete_folder_and_an_adapter_on_it_pass(tmp_path):
    base = _model_folder(tmp_path / "base")
    check_model_source(str(base))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    with pytest.raises(UsageError, match="adapter: not an adapter folder: no weights"):
        check_model_source(str(adapter))
    (adapter / "adapter_model.safetensors").write_bytes(b"")
    check_model_source(str(adapter))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p, "no such model folder (and not a Hugging Face Hub id)"),
    (lambda p: p.mkdir() or p, "empty folder"),
    (lambda p: p.write_text("x") and p, "not a folder"),
    (lambda p: _model_folder(p, config=False), "not a model folder: no config.json"),
    (lambda p: _model_folder(p, weights=False, tokenizer=False), "not a model folder: no weights (*.safetensors, "
     "*.bin, *.safetensors.index.json, *.bin.index.json), no tokenizer (tokenizer_config.json or tokenizer.json)"),
])
def test_a_bad_local_folder_is_named_with_what_it_lacks(tmp_path, make, message):
    path = make(tmp_path / "model")
    with pytest.raises(UsageError, match="^--model_name .*/model: ") as raised:
        check_model_source(str(path))
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(("config", "message"), [
    ({"base_model_name_or_path": "/nonexistent/base"},
     "adapter_config.json: base_model_name_or_path /nonexistent/base: no such model folder"),
    ({"base_model_name_or_path": ""}, "field 'base_model_name_or_path' is empty"),
    ([1, 2], "not a readable JSON object"),
])
def test_an_adapter_whose_base_is_missing_is_refused(tmp_path, config, message):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=message):
        check_model_source(str(adapter))


# check_model_source in a fresh interpreter, recording the timeout of every Hub request (get_hf_file_metadata) and
# every name lookup and connection it makes; they are printed on stdout as JSON at exit.
CHECK_AND_COUNT = """
import atexit, json, socket, sys
import huggingface_hub
requests = {"hub": [], "connections": 0}
atexit.register(lambda: print(json.dumps(requests)))
real_metadata, real_getaddrinfo, real_connect = (huggingface_hub.get_hf_file_metadata, socket.getaddrinfo,
                                                 socket.socket.connect)
def metadata(*args, timeout=None, **kwargs):
    requests["hub"].append(timeout)
    return real_metadata(*args, timeout=timeout, **kwargs)
def getaddrinfo(*args, **kwargs):
    requests["connections"] += 1
    return real_getaddrinfo(*args, **kwargs)
def connect(self, *args):
    requests["connections"] += 1
    return real_connect(self, *args)
huggingface_hub.get_hf_file_metadata, socket.getaddrinfo, socket.socket.connect = metadata, getaddrinfo, connect
from finqa_dsl.core.errors import UsageError
from finqa_dsl.models.source import check_model_source
try:
    check_model_source(sys.argv[1])
except UsageError as error:
    print(error, file=sys.stderr)
    sys.exit(2)
"""


def _check_in_subprocess(name: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Hugging Face reads HF_HUB_OFFLINE and HF_HUB_CACHE when it is imported: a fresh interpreter sees them.
    Returns the process and the requests it made (CHECK_AND_COUNT): work, not seconds, is what a test bounds."""
    result = subprocess.run([sys.executable, "-c", CHECK_AND_COUNT, name], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    return result, json.loads(result.stdout.strip().splitlines()[-1])


def test_an_unknown_hub_id_offline_is_refused_at_once(tmp_path):
    result, requests = _check_in_subprocess(UNKNOWN_ID, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    assert result.returncode == 2 and requests == {"hub": [], "connections": 0}
    assert result.stderr.strip().splitlines() == [
        f"--model_name {UNKNOWN_ID}: no such local folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is "
        "set, so the Hub is not asked): download it where there is network, or pass a folder"]


def test_an_unknown_hub_id_online_takes_one_short_request(tmp_path):
    result, requests = _check_in_subprocess(UNKNOWN_ID, HF_HUB_OFFLINE="0", HF_HUB_CACHE=str(tmp_path))
    assert result.returncode == 2 and requests["hub"] == [PROBE_TIMEOUT_S], "one request, with the short timeout"
    assert requests["connections"] <= 2, "one name lookup and one connection at most: no retries"
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"--model_name {UNKNOWN_ID}: no such local folder")
    # This machine has no network; one that has gets the Hub's answer instead.
    assert "the Hub cannot be reached within" in line or "no such model on the Hugging Face Hub" in line


def test_a_cached_hub_id_passes_offline(tmp_path):
    snapshot = tmp_path / "models--finqa-dsl-tests--cached" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--finqa-dsl-tests--cached" / "refs").mkdir()
    (tmp_path / "models--finqa-dsl-tests--cached" / "refs" / "main").write_text("a" * 40)
    result, requests = _check_in_subprocess("finqa-dsl-tests/cached", HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert requests == {"hub": [], "connections": 0}
