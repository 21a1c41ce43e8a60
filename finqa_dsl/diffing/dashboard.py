"""An HTML dashboard of chosen crosscoder latents: one self-contained page (inline CSS and JS, no network).

Per latent: class, relative decoder norm delta, decoder cosine, decoder norms per model, Latent Scaling
ratios, a histogram of its non-zero activations and its top-activating token contexts (one per example, a
window of tokens around the maximum, each token shaded by the latent's activation).

"In both models": the crosscoder reads both models at once, so a latent has one activation ``f_i`` per token
(the inference rule: BatchTopK threshold or L1 ReLU). What each model puts into it is split two ways: the
encoder side, ``x_m . W_enc[m][:, i]`` (each model's share of the pre-activation, shown per token on hover),
and the decoder side, ``f_i * ||d_i^m||`` (the norm the latent writes into each model's reconstruction, i.e.
``f_i`` times the decoder norm in the latent's table).

The page data is one JSON blob (every ``<`` escaped) rendered by the page's own script with ``textContent``,
so token text, which is untrusted, never becomes markup.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from finqa_dsl.core.io import atomic_write_text
from finqa_dsl.diffing.analysis import BASE, FT, Thresholds, classify, decoder_cosine, relative_norm
from finqa_dsl.diffing.crosscoder import Crosscoder
from finqa_dsl.diffing.shards import ActivationShards

DASHBOARD_CLASSES = ("ft_only", "base_only", "shared")  # default selection order
HISTOGRAM_BINS = 24


@torch.no_grad()
def latent_activations(crosscoder: Crosscoder, x: torch.Tensor,
                       latents: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference-rule activations ``(batch, len(latents))`` of ``latents`` on normalised ``x``, and each model's
    input contribution to their pre-activations ``(batch, n_models, len(latents))``.

    Equal to ``crosscoder.encode(x, use_threshold=True)[:, latents]``: at inference a latent's code depends on
    its own score only, so the other columns need not be computed.
    """
    contributions = torch.einsum("bmd,mdl->bml", x, crosscoder.W_enc[:, :, latents])
    f = torch.relu(contributions.sum(dim=1) + crosscoder.b_enc[latents])
    if crosscoder.config.sparsity == "batchtopk":
        if not crosscoder.has_threshold:
            raise ValueError("this crosscoder has no inference threshold yet (train it past threshold_start)")
        f = f * (f * crosscoder.decoder_norms()[latents].sum(dim=-1) > crosscoder.threshold)
    return f, contributions


@dataclass
class Scan:
    """The chosen latents' activations on the first ``rows`` rows of an activation folder, in file order."""

    latents: list[int]
    f: torch.Tensor  # (rows, L)
    contributions: torch.Tensor  # (rows, n_models, L)
    token_ids: torch.Tensor
    example_ids: torch.Tensor
    positions: torch.Tensor


@torch.no_grad()
def scan(crosscoder: Crosscoder, shards: ActivationShards, latents: list[int], *, max_tokens: int,
         chunk: int = 4096) -> Scan:
    """Read shards in order (whole examples stay contiguous) up to ``max_tokens`` rows."""
    cc = crosscoder.eval()
    device = cc.W_dec.device
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in ("f", "contributions", "token_ids",
                                                                  "example_ids", "positions")}
    rows = 0
    for index in range(len(shards.shard_rows)):
        if rows >= max_tokens:
            break
        shard = shards.load_shard(index)
        keep = min(shard["token_ids"].shape[0], max_tokens - rows)
        for start in range(0, keep, chunk):
            x = cc.normalize(shard["activations"][start:min(keep, start + chunk)].to(device))
            f, contributions = latent_activations(cc, x, latents)
            parts["f"].append(f.cpu())
            parts["contributions"].append(contributions.cpu())
        for name in ("token_ids", "example_ids", "positions"):
            parts[name].append(shard[name][:keep])
        rows += keep
    return Scan(latents=list(latents), **{name: torch.cat(values) for name, values in parts.items()})


def top_contexts(data: Scan, column: int, token_text, *, contexts: int, window: int) -> list[dict[str, Any]]:
    """The ``contexts`` highest activations of one latent, at most one per example, each with the tokens within
    ``window`` positions of it: ``[text, f, base contribution, ft contribution]`` per token."""
    f = data.f[:, column]
    out, seen = [], set()
    for row in torch.argsort(f, descending=True, stable=True).tolist():
        if len(out) == contexts or f[row] <= 0:
            break
        example, position = int(data.example_ids[row]), int(data.positions[row])
        if example in seen:
            continue
        seen.add(example)
        near = ((data.example_ids == example) & ((data.positions - position).abs() <= window)).nonzero().flatten()
        near = near[torch.argsort(data.positions[near])]
        tokens = [[token_text(int(data.token_ids[i])), _round(data.f[i, column]),
                   _round(data.contributions[i, BASE, column]), _round(data.contributions[i, FT, column])]
                  for i in near.tolist()]
        out.append({"example": example, "position": position, "max": _round(f[row]),
                    "peak": near.tolist().index(row), "tokens": tokens})
    return out


def top_firing_tokens(data: Scan, token_text, *, count: int = 5) -> dict[int, list[str]]:
    """Per scanned latent, the texts of the tokens of its ``count`` highest activations (distinct texts)."""
    out = {}
    for column, latent in enumerate(data.latents):
        f = data.f[:, column]
        texts: list[str] = []
        for row in torch.argsort(f, descending=True, stable=True).tolist():
            if len(texts) == count or f[row] <= 0:
                break
            text = token_text(int(data.token_ids[row]))
            if text not in texts:
                texts.append(text)
        out[latent] = texts
    return out


def token_texts(tokenizer):
    """A cached ``token id -> display text`` function (newlines shown as a return arrow)."""
    texts: dict[int, str] = {}

    def token_text(token_id: int) -> str:
        if token_id not in texts:
            texts[token_id] = tokenizer.decode([token_id]).replace("\n", "\u21b5")
        return texts[token_id]

    return token_text


def histogram(values: torch.Tensor, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Counts of the non-zero ``values`` in ``bins`` equal bins from 0 to their maximum."""
    on = values[values > 0].double()
    if not len(on):
        return {"max": 0.0, "counts": []}
    top = float(on.max())
    return {"max": top, "counts": torch.histc(on, bins=bins, min=0.0, max=top).long().tolist()}


def build_dashboard(crosscoder: Crosscoder, shards: ActivationShards, tokenizer, latents: list[int], *,
                    thresholds: Thresholds | None = None, scaling: dict[int, dict[str, Any]] | None = None,
                    max_tokens: int = 1_000_000, contexts: int = 8, window: int = 12) -> dict[str, Any]:
    """The page data: run metadata and, per latent, its statistics, histogram and top contexts."""
    if not latents:
        raise ValueError("no latents chosen for the dashboard")
    bad = [i for i in latents if not 0 <= i < crosscoder.config.dict_size]
    if bad:
        raise ValueError(f"latents {bad} are out of range: the crosscoder has {crosscoder.config.dict_size}")
    norms = crosscoder.decoder_norms().detach().cpu()
    delta = relative_norm(norms)
    classes = classify(delta, thresholds or Thresholds())
    cosine = decoder_cosine(crosscoder).cpu()
    data = scan(crosscoder, shards, latents, max_tokens=max_tokens)
    token_text = token_texts(tokenizer)

    pages = []
    for column, latent in enumerate(latents):
        row = {"latent": latent, "class": classes[latent], "delta": _round(delta[latent]),
               "cosine": _round(cosine[latent]), "norm_base": _round(norms[latent, BASE]),
               "norm_ft": _round(norms[latent, FT]),
               "frequency": float((data.f[:, column] > 0).double().mean()),
               "histogram": histogram(data.f[:, column]),
               "contexts": top_contexts(data, column, token_text, contexts=contexts, window=window)}
        row.update({key: (scaling or {}).get(latent, {}).get(key)
                    for key in ("nu_reconstruction", "nu_error", "artefact")})
        pages.append(row)
    metadata = shards.manifest.get("metadata", {})
    return {"meta": {key: metadata.get(key) for key in ("base_model", "ft_model", "layer", "site", "recipe")}
            | {"dict_size": crosscoder.config.dict_size, "sparsity": crosscoder.config.sparsity,
               "k": crosscoder.config.k, "tokens": int(data.f.shape[0])},
            "latents": pages}


def choose_latents(summary: dict[str, Any], per_class: int) -> list[int]:
    """The first ``per_class`` of each class's top latents in ``summary`` (most frequent first)."""
    return [row["latent"] for name in DASHBOARD_CLASSES for row in summary["top_latents"][name][:per_class]]


def render_html(data: dict[str, Any], title: str = "Crosscoder latents") -> str:
    """One self-contained HTML page of the dashboard data."""
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # The data goes in last so that no placeholder inside it is ever substituted.
    return _PAGE.replace("%TITLE%", html.escape(title)).replace("%SCRIPT%", _SCRIPT).replace("%DATA%", blob)


def write_dashboard(path: str | Path, data: dict[str, Any], title: str = "Crosscoder latents") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, render_html(data, title))
    return path


def _round(value: torch.Tensor | float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
section.latent{border-top:2px solid #ccc;padding-top:.5em;margin-top:1.5em}
table.stats td{padding:0 1em 0 0} .ctx{font-family:monospace;white-space:pre-wrap;margin:.2em 0;padding:.2em;
background:#fafafa} .tok{border-radius:2px} .tok.peak{outline:1px solid #000} .ft_only{color:#b00}
.base_only{color:#06b} .shared{color:#080} .note{color:#555;max-width:60em} svg{background:#f4f4f4}
</style></head><body>
<h1>%TITLE%</h1>
<p class="note">One activation per token and latent: the crosscoder reads both models at once (inference rule).
Hover a token for its activation f and each model's share of the pre-activation (x<sub>m</sub> &middot;
W<sub>enc</sub><sup>m</sup>). A latent writes f &middot; ||d<sup>m</sup>|| into model m's reconstruction: compare
the decoder norms. delta = 0 base-only, 1 fine-tuned-only; &nu; = Latent Scaling ratio base/ft (high: artefact).
Histograms: non-zero activations on the scanned tokens.</p>
<div id="meta"></div><nav id="nav"></nav><main id="latents"><noscript>This page needs JavaScript.</noscript></main>
<script id="data" type="application/json">%DATA%</script>
<script>%SCRIPT%</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
const data = JSON.parse(document.getElementById("data").textContent);
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function fmt(v) { return v === null || v === undefined ? "n/a" : (typeof v === "number" ? +v.toPrecision(4) : v); }
function histogram(h) {
  const ns = "http://www.w3.org/2000/svg", w = 240, ht = 60, svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", ht + 14);
  const top = Math.max(1, ...h.counts), bw = w / Math.max(1, h.counts.length);
  h.counts.forEach((c, i) => {
    const r = document.createElementNS(ns, "rect"), bh = c ? Math.max(1, ht * Math.log1p(c) / Math.log1p(top)) : 0;
    r.setAttribute("x", i * bw); r.setAttribute("y", ht - bh); r.setAttribute("width", bw - 1);
    r.setAttribute("height", bh); r.setAttribute("fill", "#557");
    const t = document.createElementNS(ns, "title"); t.textContent = c + " tokens"; r.appendChild(t);
    svg.appendChild(r);
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", 0); label.setAttribute("y", ht + 12); label.setAttribute("font-size", "10");
  label.textContent = "0 .. " + fmt(h.max) + " (log counts)";
  svg.appendChild(label);
  return svg;
}
function context(c) {
  const div = el("div", null, "ctx"), top = Math.max(c.max, 1e-9);
  c.tokens.forEach((t, i) => {
    const span = el("span", t[0], i === c.peak ? "tok peak" : "tok");
    const a = Math.min(1, Math.max(0, t[1] / top));
    span.style.background = "rgba(255,120,0," + a.toFixed(3) + ")";
    span.title = "f=" + fmt(t[1]) + "  base input=" + fmt(t[2]) + "  ft input=" + fmt(t[3]);
    div.appendChild(span);
  });
  const p = c.tokens[c.peak];
  const caption = el("div", "example " + c.example + ", position " + c.position + ": f=" + fmt(c.max) +
    " (base input " + fmt(p[2]) + ", fine-tuned input " + fmt(p[3]) + ")", "note");
  const box = el("div"); box.appendChild(div); box.appendChild(caption);
  return box;
}
const m = data.meta;
document.getElementById("meta").textContent = "base " + m.base_model + " | fine-tuned " + m.ft_model + " | layer " +
  m.layer + " " + m.site + " | " + m.sparsity + " k=" + m.k + ", " + m.dict_size + " latents | " + m.tokens +
  " tokens scanned";
const nav = document.getElementById("nav"), main = document.getElementById("latents");
data.latents.forEach(l => {
  const a = el("a", l.latent + " ", l["class"]); a.href = "#latent-" + l.latent; nav.appendChild(a);
  const s = el("section", null, "latent"); s.id = "latent-" + l.latent; s.dataset.latent = l.latent;
  s.appendChild(el("h2", "Latent " + l.latent + " \u2014 " + l["class"], l["class"]));
  const table = el("table", null, "stats"), rows = [["delta", l.delta], ["decoder cosine", l.cosine],
    ["||d base||", l.norm_base], ["||d ft||", l.norm_ft], ["frequency", l.frequency],
    ["nu reconstruction", l.nu_reconstruction], ["nu error", l.nu_error], ["artefact", l.artefact]];
  rows.forEach(r => { const tr = el("tr"); tr.appendChild(el("td", r[0])); tr.appendChild(el("td", fmt(r[1])));
    table.appendChild(tr); });
  s.appendChild(table);
  s.appendChild(histogram(l.histogram));
  s.appendChild(el("h3", "Top contexts (" + l.contexts.length + ")"));
  l.contexts.forEach(c => s.appendChild(context(c)));
  main.appendChild(s);
});
document.body.dataset.rendered = String(data.latents.length);
"""
