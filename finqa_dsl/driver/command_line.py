"""The driver's command line: flags, optionally over a YAML or JSON config file, as TRL's scripts take them.

``--config FILE`` holds a mapping of flag names (without the dashes) to values; they replace the defaults,
and flags given on the command line override them. A lone ``FILE`` argument ending in ``.json``, ``.yaml`` or
``.yml`` is ``--config FILE``. Done with ``transformers.HfArgumentParser`` as ``trl.TrlParser`` does it, plus
one-line errors for a config file that is missing, unparsable or names an unknown flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from finqa_dsl.core.errors import UsageError
from finqa_dsl.driver.arguments import DataArguments, GenerationArguments, ModelArguments, RunArguments
from finqa_dsl.models.cpu_4bit import import_bitsandbytes_offline

import_bitsandbytes_offline()  # TrainingArguments imports peft, which imports bitsandbytes: without the Hub

from transformers import HfArgumentParser, TrainingArguments  # noqa: E402

ARGUMENT_GROUPS = (ModelArguments, DataArguments, GenerationArguments, RunArguments, TrainingArguments)
CONFIG_FLAG = "--config"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def parse_command_line(argv: list[str]) -> tuple:
    """The argument dataclasses (model, data, generation, run, training) that ``argv`` describes.

    Raises :class:`UsageError` for a bad config file, ``ValueError`` where ``TrainingArguments`` refuses a
    flag, ``SystemExit`` for what argparse refuses (it prints the usage)."""
    argv = [CONFIG_FLAG, argv[0]] if len(argv) == 1 and argv[0].endswith(CONFIG_SUFFIXES) else list(argv)
    config_only = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    config_only.add_argument(CONFIG_FLAG)
    known, flags = config_only.parse_known_args(argv)
    parser = HfArgumentParser(ARGUMENT_GROUPS)
    parser.add_argument(CONFIG_FLAG, metavar="FILE",
                        help="YAML or JSON file of flag: value defaults; command-line flags override it.")
    if known.config is not None:
        config = read_config(known.config)
        flag_names = {field.name for group in ARGUMENT_GROUPS for field in dataclasses.fields(group) if field.init}
        unknown = sorted(set(config) - flag_names)
        if unknown:
            raise UsageError(f"{CONFIG_FLAG} {known.config}: unknown flag(s) {', '.join(unknown)} (keys are flag "
                             "names without the dashes; see --help).")
        parser.set_defaults(**config)
    # HfArgumentParser returns the dataclasses, then a namespace with what no dataclass holds (--config).
    return parser.parse_args_into_dataclasses(args=flags)[:len(ARGUMENT_GROUPS)]


def read_config(path: str) -> dict[str, Any]:
    """The mapping in a YAML or JSON file (JSON is YAML), or :class:`UsageError` saying what is wrong."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{CONFIG_FLAG} {path}: cannot read it ({error.strerror or error}).") from error
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"{CONFIG_FLAG} {path}: not valid YAML or JSON{where} "
                         f"({getattr(error, 'problem', None) or error}).") from error
    if not isinstance(config, dict):
        raise UsageError(f"{CONFIG_FLAG} {path}: expected a mapping of flag names to values, "
                         f"found {type(config).__name__}.")
    return config
