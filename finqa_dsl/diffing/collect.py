"""Paired activations of a base and a fine-tuned model: the same token ids through both, one layer, one site,
caught with plain forward hooks and streamed to shards (memory flat in the number of examples).

Sites: ``mlp`` (the output of the layer's MLP block) or ``resid`` (the residual stream leaving the layer,
i.e. ``hidden_states[layer + 1]``). The first token of each sequence is skipped: its activations are
attention-sink outliers whose norm would dominate a squared-error fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from finqa_dsl.core.chat import IGNORE_INDEX, encode_for_training
from finqa_dsl.diffing.shards import ShardWriter
from finqa_dsl.inference.engines.static import generate
from finqa_dsl.inference.interface import GenerationSettings
from finqa_dsl.models.batching import pad

SITES = ("mlp", "resid")
POSITIONS = ("all", "completion")


@dataclass(frozen=True)
class Sequence:
    """Token ids of one example and the first position whose activations are kept."""

    example_id: int
    input_ids: list[int]
    first_position: int


class SequenceBuilder:
    """Token ids of prompt + completion exactly as training encodes them; counts what is too long."""

    def __init__(self, tokenizer, *, positions: str = "all", max_length: int | None = None):
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
        self.tokenizer, self.positions, self.max_length = tokenizer, positions, max_length
        self.too_long = 0

    def __call__(self, example_id: int, prompt: str, completion: str) -> Sequence | None:
        encoded = encode_for_training(self.tokenizer, prompt, completion, self.max_length)
        if encoded is None:
            self.too_long += 1
            return None
        input_ids, labels = encoded
        first = 0 if self.positions == "all" else sum(label == IGNORE_INDEX for label in labels)
        return Sequence(example_id, input_ids, first)

    def from_targets(self, records: list) -> Iterator[Sequence]:
        """Prompt + gold target of each record (``.prompt``, ``.target``); example id = index in ``records``."""
        for index, record in enumerate(records):
            if (seq := self(index, record.prompt, record.target)) is not None:
                yield seq

    def from_generations(self, model, records: list, settings: GenerationSettings) -> Iterator[Sequence]:
        """Prompt + ``model``'s own greedy completion, generated batch by batch as the stream is read."""
        index = {id(record): i for i, record in enumerate(records)}
        for record, generation in generate(model, self.tokenizer, records, settings):
            if (seq := self(index[id(record)], record.prompt, generation.text)) is not None:
                yield seq


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer's list of decoder layers (``model.layers`` in Llama, Qwen2, Mistral, Gemma; found by
    name so that PEFT wrappers and multimodal nestings work too)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] == "layers" and len(module):
            return module
    raise ValueError(f"{type(model).__name__}: found no ModuleList named 'layers' of decoder layers")


def site_module(model: nn.Module, layer: int, site: str) -> nn.Module:
    """The module whose output is the activation at ``site`` of decoder layer ``layer``."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise ValueError(f"layer {layer} is out of range: the model has {len(layers)} decoder layers")
    return layers[layer].mlp if site == "mlp" else layers[layer]


class _StopForward(Exception):
    """Raised by the hook once the activation is caught: the layers above it need not run."""


@contextmanager
def catch_output(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Hold the output tensor of ``module`` (first element when it returns a tuple) in ``box["out"]`` and stop
    the forward pass there."""
    box: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        box["out"] = (output[0] if isinstance(output, tuple) else output).detach()
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        yield box
    finally:
        handle.remove()


@torch.inference_mode()
def layer_activations(model: nn.Module, module: nn.Module, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor) -> torch.Tensor:
    """``(batch, seq, d_model)`` activations of ``module`` on a right-padded batch."""
    device = next(model.parameters()).device
    with catch_output(module) as box, suppress(_StopForward):
        model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)
    return box["out"].float().cpu()


def collect_paired_activations(base: nn.Module, ft: nn.Module, sequences: Iterable[Sequence], writer: ShardWriter,
                               *, layer: int, site: str = "mlp", batch_size: int = 8, pad_id: int = 0,
                               total: int | None = None) -> int:
    """Run every sequence through both models and write the kept positions' paired activations; return rows."""
    base_site, ft_site = site_module(base, layer, site), site_module(ft, layer, site)
    rows = 0
    with tqdm(total=total, unit="ex", desc="activations") as progress:
        for batch in _chunks(sequences, batch_size):
            input_ids, attention_mask = pad([s.input_ids for s in batch], pad_id, side="right")
            paired = torch.stack([layer_activations(base, base_site, input_ids, attention_mask),
                                  layer_activations(ft, ft_site, input_ids, attention_mask)], dim=2)
            for i, seq in enumerate(batch):
                start, stop = max(1, seq.first_position), len(seq.input_ids)
                if start >= stop:
                    continue
                positions = torch.arange(start, stop)
                writer.add(paired[i, start:stop], input_ids[i, start:stop],
                           torch.full((stop - start,), seq.example_id), positions)
                rows += stop - start
            progress.update(len(batch))
    return rows


def _chunks(items: Iterable[Sequence], size: int) -> Iterator[list[Sequence]]:
    chunk: list[Sequence] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
