"""The crosscoder dashboard: planted activations written to shards with the default model's real token ids, a
crosscoder trained on those shards, scripts/analyze_crosscoder.py writes the page, and headless Chromium renders
it with the page's own script (a script error leaves no latent sections and logs to the console)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from finqa_dsl.diffing import files
from finqa_dsl.diffing.crosscoder import Crosscoder, CrosscoderConfig, load_crosscoder, save_crosscoder
from finqa_dsl.diffing.dashboard import latent_activations, render_html
from finqa_dsl.diffing.shards import ActivationShards, ShardWriter
from finqa_dsl.diffing.synthetic import PlantedActivations, PlantedSpec
from finqa_dsl.models.default_model import default_model_path
from scripts import analyze_crosscoder, train_crosscoder

D, ROWS, SEQUENCE = 32, 32_768, 64
TOKEN_OFFSET = 1000  # planted token id t is written as the real token id t + TOKEN_OFFSET (ordinary subwords)
CHROMIUM = next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)


def render_in_chromium(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console lines Chromium logged (messages, uncaught errors)."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package `chromium`): cannot render the dashboard")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=True)
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return result.stdout, console


def page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S).group(1))


@pytest.fixture(scope="module")
def tokenizer(default_tokenizer):
    return default_tokenizer


@pytest.fixture(scope="module")
def planted():
    return PlantedActivations(PlantedSpec(d_model=D))


@pytest.fixture(scope="module")
def analysed(tokenizer, planted, tmp_path_factory):
    """Shards of planted activations (examples of 64 tokens), a crosscoder trained on them, and the analysis
    folder with the dashboard of 2 latents per class."""
    root = tmp_path_factory.mktemp("dashboard")
    sample = planted.sample(ROWS, torch.Generator().manual_seed(1))
    rows = torch.arange(ROWS)
    with ShardWriter(root / "acts", d_model=D, dtype="float32", rows_per_shard=8192,
                     metadata={"base_model": str(default_model_path()), "ft_model": "planted", "layer": 0,
                               "site": "mlp"}) as writer:
        writer.add(sample["activations"], sample["token_ids"] + TOKEN_OFFSET, rows // SEQUENCE, rows % SEQUENCE + 1)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_crosscoder.main([str(root / "acts"), "--output_dir", str(root / "cc"), "--dict_size", "128",
                                      "--k", "4", "--steps", "2000", "--batch_size", "256", "--lr", "3e-3",
                                      "--warmup_steps", "50", "--threshold_start_step", "1000",
                                      "--dead_tokens", "25600", "--log_every", "500", "--no_progress"]) == 0
        assert analyze_crosscoder.main([str(root / "cc"), str(root / "acts"), "--output_dir", str(root / "out"),
                                        "--tokens", "16384", "--batch_size", "4096", "--dashboard_latents", "2",
                                        "--contexts", "5", "--window", "4", "--unembedding_models", "none"]) == 0
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.slow
def test_dashboard_shows_the_planted_latents_on_their_trigger_tokens(analysed, planted, tokenizer, tmp_path):
    page = analysed / "out" / files.DASHBOARD
    data = page_data(page)
    summary = json.loads((analysed / "out" / files.SUMMARY).read_text())
    shown = [row["latent"] for row in data["latents"]]
    assert shown == [row["latent"] for name in ("ft_only", "base_only", "shared")
                     for row in summary["top_latents"][name][:2]]
    assert data["meta"]["tokens"] == ROWS and data["meta"]["ft_model"] == "planted"

    cc = load_crosscoder(analysed / "cc" / files.CROSSCODER)
    w_ft = cc.W_dec.detach()[:, 1]
    w_ft = w_ft / w_ft.norm(dim=-1, keepdim=True)
    matched = 0
    for row in data["latents"]:
        assert row["class"] in ("ft_only", "base_only", "shared") and len(row["contexts"]) == 5
        assert sum(row["histogram"]["counts"]) == round(row["frequency"] * ROWS)
        for context in row["contexts"]:
            peak = context["tokens"][context["peak"]]
            assert peak[1] == context["max"] == max(token[1] for token in context["tokens"]) > 0
            assert len(context["tokens"]) <= 2 * 4 + 1
        if row["class"] != "ft_only":
            continue
        # A latent that found a planted fine-tuned-only feature peaks on that feature's trigger tokens only,
        # and the fine-tuned model's input carries its pre-activation there.
        cosines = planted.ft_only @ w_ft[row["latent"]]
        if cosines.max() < 0.9:
            continue
        matched += 1
        triggers = {tokenizer.decode([int(t) + TOKEN_OFFSET]) for t in planted.ft_only_tokens[int(cosines.argmax())]}
        for context in row["contexts"]:
            text, _, base_input, ft_input = context["tokens"][context["peak"]]
            assert text in triggers and ft_input > abs(base_input)
        assert row["nu_error"] is not None and row["artefact"] is False
    assert matched >= 1

    # The latent table lists the same fine-tuned-only latents, with their trigger tokens as top firing tokens.
    table = json.loads((analysed / "out" / files.LATENT_TABLE_JSON).read_text())
    top_ft = summary["top_latents"]["ft_only"][:10]
    assert [row["latent"] for row in table["ft_only"]] == [row["latent"] for row in top_ft]
    for row in table["ft_only"]:
        cosines = planted.ft_only @ w_ft[row["latent"]]
        if cosines.max() >= 0.9:
            feature = int(cosines.argmax())
            triggers = {tokenizer.decode([int(t) + TOKEN_OFFSET]) for t in planted.ft_only_tokens[feature]}
            assert row["firing_tokens"] and set(row["firing_tokens"]) <= triggers
    markdown = (analysed / "out" / files.LATENT_TABLE_MD).read_text()
    assert "## Leaning to the fine-tuned model" in markdown and "## Leaning to the base model" in markdown

    dom, console = render_in_chromium(page, tmp_path / "profile")
    assert console == []
    assert f'data-rendered="{len(shown)}"' in dom
    for latent in shown:
        assert f'id="latent-{latent}"' in dom
    assert dom.count('class="tok peak"') == 5 * len(shown)


@pytest.mark.slow
def test_latent_activations_equal_the_crosscoders_inference_code(analysed):
    cc = load_crosscoder(analysed / "cc" / files.CROSSCODER)
    x = cc.normalize(ActivationShards(analysed / "acts").load_shard(0)["activations"][:512])
    latents = [5, 0, 77, 127]
    f, contributions = latent_activations(cc, x, latents)
    torch.testing.assert_close(f, cc.encode(x, use_threshold=True)[:, latents], atol=1e-5, rtol=1e-4)
    assert (f > 0).any()
    pre = torch.einsum("bmd,mdn->bn", x, cc.W_enc)[:, latents] + cc.b_enc[latents]
    torch.testing.assert_close(contributions.sum(dim=1) + cc.b_enc[latents], pre, atol=1e-5, rtol=1e-4)


def _one_latent(tokens: list[str]) -> dict:
    return {"meta": {"base_model": "b", "ft_model": "f", "layer": 1, "site": "mlp", "recipe": None,
                     "dict_size": 8, "sparsity": "batchtopk", "k": 2, "tokens": 10},
            "latents": [{"latent": 3, "class": "ft_only", "delta": 0.95, "cosine": None, "norm_base": 0.1,
                         "norm_ft": 1.0, "frequency": 0.5, "nu_reconstruction": None, "nu_error": None,
                         "artefact": None, "histogram": {"max": 2.0, "counts": [1, 0, 3]},
                         "contexts": [{"example": 0, "position": 1, "max": 2.0, "peak": 1,
                                       "tokens": [[t, 1.0, 0.5, 0.5] for t in tokens]}]}]}


def test_untrusted_token_text_stays_text(tmp_path):
    hostile = ["</script><img src=x onerror=alert(1)>", "%DATA%", "<b>&amp;</b>", "\u2028'\""]
    page = tmp_path / "page.html"
    page.write_text(render_html(_one_latent(hostile), title="<i>t</i>"), encoding="utf-8")
    assert page_data(page)["latents"][0]["contexts"][0]["tokens"][0][0] == hostile[0]
    dom, console = render_in_chromium(page, tmp_path / "profile")
    assert console == []
    assert 'data-rendered="1"' in dom and 'id="latent-3"' in dom
    assert "<img" not in dom and "<b>" not in dom and "<i>" not in dom
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in dom and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in dom


def test_a_script_error_is_caught(tmp_path):
    """The console check can fail: a page whose data breaks the script renders nothing and logs the error."""
    page = tmp_path / "page.html"
    data = _one_latent(["a", "b"])
    del data["latents"][0]["contexts"][0]["tokens"]
    page.write_text(render_html(data), encoding="utf-8")
    dom, console = render_in_chromium(page, tmp_path / "profile")
    assert any("Uncaught TypeError" in line for line in console)
    assert "data-rendered" not in dom


def test_dashboard_flag_errors_come_in_one_line_before_any_work(tmp_path, capsys):
    with ShardWriter(tmp_path / "acts", d_model=6, metadata={"layer": 0}) as writer:
        writer.add(torch.randn(50, 2, 6), torch.arange(50), torch.zeros(50), torch.arange(50))
    save_crosscoder(Crosscoder(CrosscoderConfig(d_model=6, dict_size=8, k=2)), tmp_path / "cc.pt")
    common = [str(tmp_path / "cc.pt"), str(tmp_path / "acts"), "--output_dir", str(tmp_path / "out")]
    for flags, message in ((["--latents", "1,x"], "--latents must be comma-separated integers"),
                           ([], "the manifest names no base_model: pass --tokenizer"),
                           (["--contexts", "0"], "--contexts")):
        assert analyze_crosscoder.main([*common, *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
