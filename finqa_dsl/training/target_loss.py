"""The causal-LM loss computed only where the labels count: the LM head runs on the target positions alone.

Completion-only labels cover about a tenth of the tokens, yet a causal LM's forward projects every position onto
the whole vocabulary, and its loss upcasts those logits to float32 and back-propagates through all of them: with
Gemma-3's 262,144-entry vocabulary, 4 x 1,024 tokens of float32 logits alone take 4.3 GB. :class:`TargetLossTrainer`
computes the same loss without them:

1. The model runs its own forward (through DDP, PEFT and gradient checkpointing as usual) while a forward pre-hook
   on its output embedding keeps the final hidden states and hands the head an empty slice of them: the forward
   computes no logits.
2. The hidden states at the positions whose next-token label is not -100 (labels shifted by one, as
   transformers' ``ForCausalLMLoss`` shifts them) are gathered, and head (+ Gemma's final-logit soft-capping) +
   float32 cross-entropy run over them in chunks of at most :data:`CHUNK_LOGIT_BYTES` of logits. With more than
   one chunk each chunk is checkpointed (its logits recomputed in the backward pass), so at most one chunk's
   logits exist at a time.
3. The sum is divided by ``num_items_in_batch`` when the Trainer passes one (the token count of the whole
   gradient-accumulation step), else by the batch's counted tokens: ``ForCausalLMLoss``'s reduction.

Only model classes whose forward is known to be ``logits = lm_head(hidden)`` (optionally soft-capped) take this
path (:data:`HEAD_FORWARDS`); any other model trains with its own full-logit loss, and the caller is told.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import Trainer

from finqa_dsl.core.chat import IGNORE_INDEX
from finqa_dsl.training.options import FULL, LIGER, TARGET_ONLY

logger = logging.getLogger(__name__)

CHUNK_LOGIT_BYTES = 2**27  # float32 logits per chunk: 128 MiB (128 tokens of Gemma-3's vocabulary)
# Causal-LM classes whose forward computes ``logits = lm_head(last_hidden_state)``, then soft-caps them with
# ``config.final_logit_softcapping`` where True (read in the transformers 5 sources; each one tested).
HEAD_FORWARDS = {
    "LlamaForCausalLM": False, "MistralForCausalLM": False, "Qwen2ForCausalLM": False, "Qwen3ForCausalLM": False,
    "Gemma2ForCausalLM": True, "Gemma3ForCausalLM": True, "Gemma3ForConditionalGeneration": False,
}


@dataclass(frozen=True)
class OutputHead:
    """A causal LM's output projection (the ``lm_head`` module, LoRA-wrapped or tied to the input embedding
    as the model has it) and the soft-capping its forward applies to the logits."""

    projection: nn.Module
    softcap: float | None
    vocab_size: int

    @classmethod
    def of(cls, model: nn.Module) -> OutputHead | None:
        """The head of a transformers causal LM or of a PEFT model around one; None when the model's class is
        not one of :data:`HEAD_FORWARDS`."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        softcaps = HEAD_FORWARDS.get(type(base).__name__)
        if softcaps is None:
            return None
        softcap = base.config.final_logit_softcapping if softcaps else None
        return cls(base.get_output_embeddings(), softcap, base.config.get_text_config().vocab_size)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The logits of ``hidden`` exactly as the model's forward computes them (same ops, same dtype)."""
        logits = self.projection(hidden)
        if self.softcap is not None:
            logits = logits / self.softcap
            logits = torch.tanh(logits)
            logits = logits * self.softcap
        return logits

    @contextmanager
    def capturing_input(self) -> Iterator[list[torch.Tensor]]:
        """Within the block the first call of the head is short-circuited: its input (the final hidden states)
        is appended to the yielded list and the head projects an empty slice of it instead, so the forward
        computes no logits. Later calls (our own, on the gathered states) run normally."""
        captured: list[torch.Tensor] = []

        def keep_input(module, args):
            if captured:
                return None
            captured.append(args[0])
            return (args[0][..., :0, :], *args[1:])

        handle = self.projection.register_forward_pre_hook(keep_input)
        try:
            yield captured
        finally:
            handle.remove()


def target_token_loss(head: OutputHead, hidden: torch.Tensor, labels: torch.Tensor,
                      num_items_in_batch: torch.Tensor | int | None = None,
                      chunk_tokens: int | None = None) -> torch.Tensor:
    """transformers' ``ForCausalLMLoss`` of ``head.logits(hidden)`` against ``labels`` (the token at position
    i+1 is the target of position i; -100 counts nothing), computing logits only at the counted positions,
    ``chunk_tokens`` at a time (default: :data:`CHUNK_LOGIT_BYTES` of float32 logits)."""
    shift_labels = F.pad(labels, (0, 1), value=IGNORE_INDEX)[..., 1:].to(hidden.device)
    counted = shift_labels != IGNORE_INDEX
    states, targets = hidden[counted], shift_labels[counted]
    size = chunk_tokens or max(1, CHUNK_LOGIT_BYTES // (4 * head.vocab_size))
    chunks = list(zip(states.split(size), targets.split(size), strict=True)) or [(states, targets)]

    def chunk_sum(chunk_states: torch.Tensor, chunk_targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head.logits(chunk_states).float(), chunk_targets, reduction="sum")

    recompute = torch.is_grad_enabled() and len(chunks) > 1  # one chunk: its logits are the only ones anyway
    total = sum(checkpoint(chunk_sum, s, t, use_reentrant=False) if recompute else chunk_sum(s, t)
                for s, t in chunks)
    if num_items_in_batch is None:
        return total / counted.sum()
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


class TargetLossTrainer(Trainer):
    """The HF Trainer with the causal-LM loss of :func:`target_token_loss`; everything else (gradient
    accumulation, ``num_items_in_batch``, DDP, evaluation) is the Trainer's own, so the loss and gradients equal
    those of the model's full-logit loss. The forward outputs it returns carry empty logits."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.output_head = OutputHead.of(self.model)
        if self.output_head is None:
            raise ValueError(f"{type(self.model).__name__}: no known output head; train it with the full loss.")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "labels" not in inputs or self.label_smoother is not None or self.compute_loss_func is not None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        with self.output_head.capturing_input() as captured:
            outputs = model(**inputs)
        # As Trainer.compute_loss: num_items_in_batch reaches the loss only for a model that accepts loss kwargs.
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = target_token_loss(self.output_head, captured[0], labels, items)
        if self.args.average_tokens_across_devices and items is not None:
            # Trainer.compute_loss's scaling: the gradients DDP averages over ranks become sums over tokens.
            loss = loss * (self.accelerator.num_processes // self.get_tp_size() if self.args.n_gpu <= 1
                           else self.args.n_gpu)
        return (loss, outputs) if return_outputs else loss


def trainer_class(loss_implementation: str, model, training_args) -> tuple[type[Trainer], str]:
    """The Trainer class for ``loss_implementation`` and the loss that will actually run: ``target_only`` falls
    back to ``full`` (with a warning) for a model outside :data:`HEAD_FORWARDS`; ``liger`` turns on
    ``training_args.use_liger_kernel`` (liger-kernel's fused linear cross-entropy, GPU only)."""
    if loss_implementation == LIGER:
        training_args.use_liger_kernel = True
        return Trainer, LIGER
    if loss_implementation == TARGET_ONLY:
        if OutputHead.of(model) is not None:
            return TargetLossTrainer, TARGET_ONLY
        logger.warning("%s: target-only loss not known to be exact for this model class; using the full-logit "
                       "loss", type(model).__name__)
    return Trainer, FULL
