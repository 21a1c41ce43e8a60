"""The engines of the Hugging Face backend (:mod:`finqa_dsl.inference.hf_backend`), one module each, named as
in :data:`finqa_dsl.inference.interface.ENGINES`: each has ``generate(model, tokenizer, records, settings)``
yielding ``(record, Generation)`` as rows finish.

- :mod:`.static`: left-padded batches of ``model.generate``, and the decoding loop it shares with the prefix
  engine (finished rows leave every few tokens).
- :mod:`.prefix`: the prompts' shared prefix encoded once, waiting prompts joining as rows leave.
- :mod:`.continuous`: transformers' continuous batching.

Their machinery: :mod:`.kv_cache` (caches that grow in place, rows of different lengths stacked) and
:mod:`.cascade_attention` (attention over one shared-prefix cache and each row's own).
"""
