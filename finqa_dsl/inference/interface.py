"""What every inference backend takes and gives, and which settings each backend and engine honours.

A backend is a callable ``generate(records, settings)`` that yields ``(record, Generation)`` pairs, in any
order, for records with ``.id`` and ``.prompt``. Two backends exist (:data:`BACKENDS`):
:mod:`finqa_dsl.inference.hf_backend` (a loaded transformers model, generating with one of the engines in
:data:`ENGINES`) and :mod:`finqa_dsl.inference.vllm_backend` (vLLM's offline engine).
:mod:`finqa_dsl.inference.predictions_file` streams their generations to disk.

:data:`ENGINES` is the one registry of the HF backend's engines: each name is the module
``finqa_dsl.inference.engines.<name>`` (whose ``generate(model, tokenizer, records, settings)`` does the work)
and says which settings the engine honours. :func:`check_settings` refuses, before any model loads, a setting
that the chosen backend or engine would drop; this module imports no torch, so the driver checks its flags with
it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from finqa_dsl.core.errors import UsageError

PER_EXAMPLE = "per_example"  # batch size 1: latency_ms is the example's own single-stream latency
BATCH_WALL_TIME = "batch_wall_time"  # static, batch size > 1: latency_ms runs from its batch's start until it left
IN_FLIGHT = "in_flight"  # prefix/continuous: latency_ms runs from the example's admission to its last token

DEFAULT_EXIT_EVERY = 4  # static/prefix: new tokens between removals of finished rows (BENCHMARKS.md)


@dataclass(frozen=True)
class Honours:
    """Which generation settings a backend or engine honours; a setting it does not honour is refused by
    :func:`check_settings` rather than dropped."""

    beams: bool  # num_beams > 1
    sampling: bool  # do_sample, with temperature and top_p
    stop_strings: bool  # the target's stop strings cut the generation
    exit_every: bool  # finished rows leave the batch every ``exit_every`` new tokens
    constrained: bool  # each row keeps to its record's grammar (--constrained_decoding)
    batch_size: str  # what the batch size (--inference_batch_size) means to it


AUTO = "auto"
# The HF backend's engines, by module name under finqa_dsl.inference.engines (README: Test inference engines).
ENGINES: dict[str, Honours] = {
    "static": Honours(beams=True, sampling=True, stop_strings=True, exit_every=True, constrained=True,
                      batch_size="prompts per batch, the next batch starting when every row of this one stopped"),
    "prefix": Honours(beams=False, sampling=True, stop_strings=True, exit_every=True, constrained=True,
                      batch_size="rows decoding at once, waiting prompts joining as rows leave"),
    # transformers' continuous batching takes no per-request logits processor that could hold a grammar's state
    "continuous": Honours(beams=False, sampling=True, stop_strings=True, exit_every=False, constrained=False,
                          batch_size="requests in one step of transformers' continuous batching at most"),
}
ENGINE_CHOICES = (AUTO, *ENGINES)
# What ``auto`` runs: the first of these that honours the settings and can batch the model's cache
# (finqa_dsl.inference.hf_backend.resolve_engine). The last honours every setting.
AUTO_ORDER = ("prefix", "static")

HF, VLLM = "hf", "vllm"
BACKENDS = (HF, VLLM)
VLLM_HONOURS = Honours(beams=False, sampling=True, stop_strings=True, exit_every=False, constrained=True,
                       batch_size="prompts per vLLM call (vLLM schedules them), written when the call ends")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding knobs (the FinQA fine-tuning driver's ``--generation_*`` flags), the inference batch size, the
    engine (:data:`ENGINE_CHOICES`), the target's stop strings, how often finished rows leave a batch, whether
    each record's grammar constrains it (``record.grammar``) and how many samples each record gets
    (:meth:`passes`)."""

    max_new_tokens: int = 128
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    engine: str = AUTO
    stop_strings: tuple[str, ...] = ()
    exit_every: int = DEFAULT_EXIT_EVERY  # 0: never
    constrained: bool = False
    num_samples: int = 1

    def __post_init__(self):
        if self.engine not in ENGINE_CHOICES:
            raise UsageError(f"--inference_engine {self.engine!r} is not one of: {', '.join(ENGINE_CHOICES)}.")

    @property
    def latency_mode(self) -> str:
        return PER_EXAMPLE if self.batch_size == 1 else BATCH_WALL_TIME

    def passes(self) -> list[tuple[GenerationSettings, tuple[int, ...]]]:
        """The generation passes that give every record its ``num_samples`` samples: ``(settings of one
        generation per record, the sample numbers it gives)``. Sample 0 is decoded as the flags say (greedy by
        default); samples 1 to N-1 are drawn with ``temperature`` and ``top_p``, in one pass in which each record
        appears N-1 times in a row (the prefix engine encodes such repeated prompts once)."""
        one = replace(self, num_samples=1)
        if self.num_samples == 1 or self.do_sample:
            return [(one, tuple(range(self.num_samples)))]
        first = replace(one, temperature=1.0, top_p=1.0)
        return [(first, (0,)), (replace(one, do_sample=True), tuple(range(1, self.num_samples)))]


def check_settings(backend: str, settings: GenerationSettings) -> None:
    """Raise :class:`~finqa_dsl.core.errors.UsageError` (a ValueError) naming the flag, for settings that
    ``backend`` (:data:`BACKENDS`) with ``settings.engine`` cannot honour as asked: a value out of range, a
    sampling knob without sampling, or a setting the backend or engine would otherwise drop. ``auto`` passes
    when one of :data:`AUTO_ORDER` honours the settings (the static engine honours all of them)."""
    if backend not in BACKENDS:
        raise UsageError(f"--inference_backend {backend!r} is not one of: {', '.join(BACKENDS)}.")
    _check_values(settings)
    if backend == VLLM:
        if settings.engine != AUTO:
            raise UsageError(f"--inference_engine {settings.engine} chooses an engine of --inference_backend hf; "
                             "vLLM has its own: leave --inference_engine auto with --inference_backend vllm.")
        _check_honoured(VLLM_HONOURS, settings, "--inference_backend vllm", "use --inference_backend hf")
        return
    if settings.engine == AUTO:
        return  # the last engine of AUTO_ORDER honours every setting
    others = [name for name in ENGINE_CHOICES if name != settings.engine]
    _check_honoured(ENGINES[settings.engine], settings, f"--inference_engine {settings.engine}",
                    f"use --inference_engine {' or '.join(name for name in others if honours(name, settings))}")


def honours(engine: str, settings: GenerationSettings) -> bool:
    """Whether ``engine`` (of the HF backend, or ``auto``) honours every one of ``settings``."""
    if engine == AUTO:
        return True
    try:
        _check_honoured(ENGINES[engine], settings, engine, "")
    except UsageError:
        return False
    return True


def _check_values(settings: GenerationSettings) -> None:
    if settings.max_new_tokens < 1:
        raise UsageError(f"--generation_max_new_tokens must be >= 1, got {settings.max_new_tokens}.")
    if settings.num_beams < 1:
        raise UsageError(f"--generation_num_beams must be >= 1, got {settings.num_beams}.")
    if settings.batch_size < 1:
        raise UsageError(f"--inference_batch_size must be >= 1, got {settings.batch_size}.")
    if settings.exit_every < 0:
        raise UsageError(f"exit_every must be >= 0, got {settings.exit_every}.")
    if settings.num_samples < 1:
        raise UsageError(f"--num_samples must be >= 1, got {settings.num_samples}.")
    if settings.num_beams > 1 and (settings.constrained or settings.num_samples > 1):
        raise UsageError("--generation_num_beams > 1 does not combine with --constrained_decoding or --num_samples: "
                         "beam search reorders its hypotheses, and samples are drawn, not searched.")
    samples = settings.do_sample or settings.num_samples > 1
    if not samples and (settings.temperature != 1.0 or settings.top_p != 1.0):
        raise UsageError("--generation_temperature/--generation_top_p only apply with --generation_do_sample true "
                         "or --num_samples > 1.")
    if settings.temperature <= 0:
        raise UsageError(f"--generation_temperature must be > 0, got {settings.temperature} (greedy decoding: "
                         "leave --generation_do_sample false).")
    if not 0 < settings.top_p <= 1:
        raise UsageError(f"--generation_top_p must be in (0, 1], got {settings.top_p}.")


def _check_honoured(honoured: Honours, settings: GenerationSettings, who: str, instead: str) -> None:
    """Raise UsageError when ``settings`` ask for something that ``honoured`` lacks; ``who`` is the flag and value
    that chose it, ``instead`` says what to do."""
    if settings.num_beams > 1 and not honoured.beams:
        raise UsageError(f"{who} does not do beam search (--generation_num_beams {settings.num_beams}): {instead}.")
    if settings.do_sample and not honoured.sampling:
        raise UsageError(f"{who} does not sample (--generation_do_sample true): {instead}.")
    if settings.stop_strings and not honoured.stop_strings:
        raise UsageError(f"{who} cannot stop at the target's stop strings {list(settings.stop_strings)}: {instead}.")
    if settings.constrained and not honoured.constrained:
        raise UsageError(f"{who} cannot constrain generations to a grammar (--constrained_decoding): {instead}.")
    if settings.exit_every != DEFAULT_EXIT_EVERY and not honoured.exit_every:
        raise UsageError(f"{who} has no rows leaving every n tokens (exit_every {settings.exit_every}): "
                         f"{instead}.")


@dataclass(frozen=True)
class Generation:
    """One finished generation."""

    text: str  # new tokens only, special tokens skipped, stripped
    new_tokens: int  # up to and including the stop token
    latency_ms: float  # see PER_EXAMPLE / BATCH_WALL_TIME / IN_FLIGHT
    latency_mode: str
    batch_size: int  # members of the batch it was generated in
    share_ms: float  # its part of the generation wall time: the shares of all rows add up to it
    logprob: float | None = None  # summed log-probability of its tokens (None where the engine cannot tell)


class Backend(Protocol):
    def __call__(self, records: Sequence, settings: GenerationSettings) -> Iterator[tuple[Any, Generation]]: ...
