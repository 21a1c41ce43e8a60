"""Where a run's right and wrong answers lie: accuracy of one or more run folders by gold program steps, by
operation, by evidence kind, by question type, and the failure reasons, side by side; the examples one run gets
right and another misses. Written as markdown (``report.md``), the same numbers as JSON (``report.json``) and
PNG bar charts, into one folder.

A run is read from its folder: ``test_predictions.jsonl`` (scored rows, as the driver writes them) and
``args.json`` (its ``test_file``, the gold examples each row is grouped by, see
:mod:`finqa_dsl.core.example_kinds`). Whether a row is right is one of its correctness flags: by default the
first one its target scores (``execution_correct`` for programs and code, ``answer_correct_strict`` for numbers
and answers; the target registry says which a target has). A run with several samples per example
(``--num_samples``) is read as one row per example: sample 0 (greedy by default) or the majority vote's
(:mod:`finqa_dsl.core.voting`).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finqa_dsl.core import example_kinds as kinds
from finqa_dsl.core import metrics as m
from finqa_dsl.core import prediction_rows as row_keys
from finqa_dsl.core import voting
from finqa_dsl.core.data import DatasetError, Example, load_examples
from finqa_dsl.core.dsl import OPERATIONS
from finqa_dsl.core.errors import UsageError
from finqa_dsl.core.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from finqa_dsl.core.targets import Target, get_target
from finqa_dsl.runs import files as run_files
from finqa_dsl.runs.folder import run_test_file

# Which row of an example with several samples the report reads.
SAMPLE_CHOICES: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    "greedy": voting.greedy_rows, "voted": voting.voted_rows}
# The report's files.
REPORT_MARKDOWN = "report.md"
REPORT_JSON = "report.json"
FAILURE_CHART = "failure_reasons.png"
RIGHT = "(right)"  # the failure-reason group of the rows that are right
MAX_CELL_CHARS = 160  # longer texts are cut in the markdown (report.json keeps them whole)


class ReportError(UsageError):
    """A run folder the report cannot read; the message names the folder or file and what is missing."""


@dataclass(frozen=True)
class Breakdown:
    """One way of grouping examples: a title, a chart file, the groups an example falls in, their order."""

    key: str
    title: str
    note: str
    chart: str
    groups_of: Callable[[Example], Sequence[str]]
    order: Sequence[str] = ()  # groups shown first, in this order; any others follow sorted


BREAKDOWNS = (
    Breakdown("steps", "Accuracy by number of gold program steps",
              f"Steps of the example's gold program; {kinds.MANY_STEPS} or more share a group.",
              "accuracy_by_steps.png", lambda example: (kinds.step_count_group(example),),
              tuple(str(n) for n in range(1, kinds.MANY_STEPS)) + (f"{kinds.MANY_STEPS}+", "unparsable")),
    Breakdown("operation", "Accuracy by operation",
              "An example counts once under each operation its gold program uses, so the groups overlap.",
              "accuracy_by_operation.png", kinds.gold_operations, OPERATIONS),
    Breakdown("evidence", "Accuracy by evidence kind",
              "Where the example's gold evidence (its gold_inds) lies: table rows, text sentences or both.",
              "accuracy_by_evidence.png", lambda example: (kinds.evidence_kind(example),), kinds.EVIDENCE_KINDS),
    Breakdown("question_type", "Accuracy by question type",
              "From the gold program's steps and the question text; the rules are in "
              "`finqa_dsl/core/example_kinds.py`.",
              "accuracy_by_question_type.png", lambda example: (kinds.question_type(example),),
              kinds.QUESTION_TYPES),
)


@dataclass
class Run:
    """One run folder's scored rows joined to their gold examples."""

    label: str
    folder: Path
    target: Target
    flag: str  # the correctness flag that says a row is right
    rows: list[dict[str, Any]]  # the rows whose id is in the gold, in file order (repeated ids each count)
    examples: dict[str, Example]
    n_left_out: int = 0  # rows whose id is not in the gold file
    n_not_predicted: int = 0  # gold examples without a row
    test_file: Path | None = None
    first_row: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> its first row

    def right(self, row: dict[str, Any]) -> bool:
        return bool(row[self.flag])


def scored_flags(target: Target) -> tuple[str, ...]:
    """The correctness flags the rows of ``target`` carry (what its summary counts), in the order of
    :data:`~finqa_dsl.core.metrics.CORRECT_FLAGS`."""
    summary = target.summarize([])
    return tuple(flag for flag in m.CORRECT_FLAGS if summary.get(flag) is not None)


def load_run(folder: str | Path, *, flag: str | None = None, label: str | None = None,
             samples: str = "greedy") -> Run:
    """Read a run folder's scored predictions and gold examples, one row per example of a run with several
    samples (``samples``: :data:`SAMPLE_CHOICES`); :class:`ReportError` with one line naming the file when it has
    none or they are not scored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: not a folder")
    path = folder / run_files.TEST_PREDICTIONS
    if not path.is_file():
        raise ReportError(f"{path}: no test predictions; was the run made with --do_test?")
    rows, _ = row_keys.read_prediction_rows(path, torn_tail_ok=True)  # a run still writing: its finished rows
    if not rows:
        raise ReportError(f"{path}: holds no predictions")
    target_name = row_keys.common_target_field(rows, path)
    if target_name is None:
        raise ReportError(f"{path}: rows carry no {row_keys.TARGET_FIELD}: not scored by the driver")
    try:
        target = get_target(target_name)
    except ValueError as error:
        raise ReportError(f"{path}: {error}") from None
    flags = scored_flags(target)
    chosen = flag or flags[0]
    if chosen not in flags:
        raise ReportError(f"{path}: {target.name} predictions are not scored by {chosen} (they carry "
                          f"{', '.join(flags)})")
    rows = SAMPLE_CHOICES[samples]([m.with_current_keys(row) for row in rows])
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get(chosen), bool):
            raise ReportError(f"{path}: line {number} (id {row[row_keys.ID]}): field '{chosen}': expected "
                              "true or false (a scored row)")
    test_file = run_test_file(folder)
    try:
        examples = {example.id: example for example in load_examples(test_file)}
    except (DatasetError, OSError) as error:
        raise ReportError(f"{folder}: its test_file cannot be read: {error}") from None
    joined = [row for row in rows if row[row_keys.ID] in examples]
    first_row: dict[str, dict[str, Any]] = {}
    for row in joined:
        first_row.setdefault(row[row_keys.ID], row)
    return Run(label=label or folder.name, folder=folder, target=target, flag=chosen, rows=joined,
               examples=examples, n_left_out=len(rows) - len(joined),
               n_not_predicted=len(examples.keys() - first_row.keys()), test_file=test_file, first_row=first_row)


def unique_labels(folders: Sequence[Path]) -> list[str]:
    """Each folder's name, or its path where two folders share a name."""
    names = Counter(folder.name for folder in folders)
    return [folder.name if names[folder.name] == 1 else str(folder) for folder in folders]


# --- the numbers -------------------------------------------------------------------------------------------

def accuracy_table(runs: Sequence[Run], breakdown: Breakdown) -> dict[str, dict[str, dict[str, int]]]:
    """``group -> run label -> {"right": k, "n": n}`` over each run's rows, groups in the breakdown's order."""
    counts: dict[str, dict[str, Counter]] = {}
    for run in runs:
        for row in run.rows:
            for group in breakdown.groups_of(run.examples[row[row_keys.ID]]):
                tally = counts.setdefault(group, {}).setdefault(run.label, Counter())
                tally["n"] += 1
                tally["right"] += run.right(row)
    return {group: {run.label: {"right": counts[group].get(run.label, Counter())["right"],
                                "n": counts[group].get(run.label, Counter())["n"]} for run in runs}
            for group in _ordered(counts, breakdown.order)}


def failure_table(runs: Sequence[Run]) -> dict[str, dict[str, dict[str, int]]]:
    """``failure reason -> run label -> {"count": c, "n": n}``: :data:`RIGHT` first, then the reasons by their
    count over all runs. The reason is the row's ``failure_reason`` (None: right by its target's own rule)."""
    counts = {run.label: Counter(row.get(m.FAILURE_REASON) or RIGHT for row in run.rows) for run in runs}
    total = sum(counts.values(), Counter())
    reasons = [RIGHT] * (RIGHT in total) + sorted(set(total) - {RIGHT}, key=lambda reason: (-total[reason], reason))
    return {reason: {run.label: {"count": counts[run.label][reason], "n": len(run.rows)} for run in runs}
            for reason in reasons}


def differences(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """For each ordered pair of runs: the examples (ids both runs predicted, in the first run's order) the
    first gets right and the second misses, with the question, the gold and each run's parsed prediction."""
    pairs = []
    for better in runs:
        for worse in runs:
            if better is worse:
                continue
            examples = []
            for example_id, row in better.first_row.items():
                other = worse.first_row.get(example_id)
                if other is not None and better.right(row) and not worse.right(other):
                    example = better.examples[example_id]
                    examples.append({"id": example_id, "question": example.question, "gold_program": example.program,
                                     "gold_exe_ans": example.exe_ans,
                                     "parsed_predictions": {better.label: row.get(row_keys.PARSED_PREDICTION),
                                                            worse.label: other.get(row_keys.PARSED_PREDICTION)}})
            pairs.append({"right": better.label, "missed": worse.label, "examples": examples})
    return pairs


def build_report(runs: Sequence[Run]) -> dict[str, Any]:
    """Every number of the report, JSON-ready."""
    return {
        "runs": [{"label": run.label, "folder": str(run.folder), "target_field": run.target.name,
                  "correct_flag": run.flag, "test_file": str(run.test_file), "right": sum(map(run.right, run.rows)),
                  "n": len(run.rows), "n_left_out": run.n_left_out, "n_not_predicted": run.n_not_predicted}
                 for run in runs],
        "breakdowns": {breakdown.key: accuracy_table(runs, breakdown) for breakdown in BREAKDOWNS},
        "failure_reasons": failure_table(runs),
        "differences": differences(runs) if len(runs) > 1 else [],
    }


# --- the files ---------------------------------------------------------------------------------------------

def write_report(runs: Sequence[Run], output_dir: str | Path) -> list[Path]:
    """Write report.md, report.json and the charts into ``output_dir`` (each file atomically); their paths."""
    output_dir = Path(output_dir)
    report = build_report(runs)
    labels = [run.label for run in runs]
    written = []
    for breakdown in BREAKDOWNS:
        table = report["breakdowns"][breakdown.key]
        values = {group: [_share(cell["right"], cell["n"]) for cell in table[group].values()] for group in table}
        texts = {group: [f"{cell['right']}/{cell['n']}" for cell in table[group].values()] for group in table}
        written.append(_bar_chart(output_dir / breakdown.chart, breakdown.title, labels, values, texts,
                                  ylabel="accuracy (%)"))
    table = report["failure_reasons"]
    values = {reason: [_share(cell["count"], cell["n"]) for cell in table[reason].values()] for reason in table}
    texts = {reason: [str(cell["count"]) for cell in table[reason].values()] for reason in table}
    written.append(_bar_chart(output_dir / FAILURE_CHART, "Failure reasons", labels, values, texts,
                              ylabel="share of examples (%)"))
    atomic_write_json(output_dir / REPORT_JSON, report)
    atomic_write_text(output_dir / REPORT_MARKDOWN, render_markdown(report))
    return [output_dir / REPORT_MARKDOWN, output_dir / REPORT_JSON, *written]


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the runs, one table per breakdown (one column per run), the failure reasons,
    the differences."""
    runs = report["runs"]
    labels = [run["label"] for run in runs]
    lines = ["# Results report", "",
             "Each cell is right/n = accuracy over the run's test predictions whose id is in its test file.", "",
             "| run | target | right when | test file | accuracy | not in test file | test examples not predicted |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {_cell(run['label'])} | {run['target_field']} | `{run['correct_flag']}` | {_cell(run['test_file'])} "
              f"| {_fraction(run['right'], run['n'])} | {run['n_left_out']} | {run['n_not_predicted']} |"
              for run in runs]
    for breakdown in BREAKDOWNS:
        table = report["breakdowns"][breakdown.key]
        lines += ["", f"## {breakdown.title}", "", breakdown.note, "", f"![{breakdown.title}]({breakdown.chart})", "",
                  *_table("group", labels, {group: [_fraction(cell["right"], cell["n"]) for cell in cells.values()]
                                            for group, cells in table.items()})]
    lines += ["", "## Failure reasons", "",
              f"Each row's `{m.FAILURE_REASON}` (why its target scores it wrong; {RIGHT}: right by the target's own "
              "rule, which for the numerical and answer targets is the tolerant match): count/n = share of the run's "
              "examples.", "", f"![Failure reasons]({FAILURE_CHART})", "",
              *_table("failure reason", labels,
                      {reason: [_fraction(cell["count"], cell["n"]) for cell in cells.values()]
                       for reason, cells in report["failure_reasons"].items()})]
    for pair in report["differences"]:
        right, missed = pair["right"], pair["missed"]
        lines += ["", f"## Right in {right}, missed by {missed}: {len(pair['examples'])}", ""]
        if pair["examples"]:
            lines += [f"| id | question | gold | {_cell(right)} wrote | {_cell(missed)} wrote |",
                      "|---|---|---|---|---|"]
            lines += [f"| {_cell(example['id'])} | {_cell(example['question'])} | {_cell(example['gold_program'])} "
                      f"= {_cell(example['gold_exe_ans'])} | {_cell(example['parsed_predictions'][right])} "
                      f"| {_cell(example['parsed_predictions'][missed])} |"
                      for example in pair["examples"]]
    return "\n".join(lines) + "\n"


def default_output_dir(folders: Sequence[Path]) -> Path:
    """``RUN/report`` for one run; ``report--A--B...`` beside the first run for several."""
    if len(folders) == 1:
        return folders[0] / "report"
    return folders[0].parent / "--".join(["report", *(folder.name for folder in folders)])


def _ordered(groups, order: Sequence[str]) -> list[str]:
    first = [group for group in order if group in groups]
    return first + sorted(set(groups) - set(first))


def _share(part: int, whole: int) -> float:
    return 100 * part / whole if whole else 0.0


def _fraction(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / whole:.1f}%" if whole else "-"


def _table(first: str, labels: Sequence[str], cells: dict[str, list[str]]) -> list[str]:
    return [f"| {first} | " + " | ".join(map(_cell, labels)) + " |", "|---" * (len(labels) + 1) + "|",
            *(f"| {_cell(group)} | " + " | ".join(values) + " |" for group, values in cells.items())]


def _cell(value: Any) -> str:
    text = "-" if value is None else " ".join(str(value).split())
    if len(text) > MAX_CELL_CHARS:
        text = text[:MAX_CELL_CHARS - 1] + "…"
    return text.replace("|", "\\|")


def _bar_chart(path: Path, title: str, labels: Sequence[str], values: dict[str, list[float]],
               texts: dict[str, list[str]], *, ylabel: str) -> Path:
    """Grouped bars: one group per key of ``values``, one bar per run, each labelled with its text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(values)
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, len(groups) * (0.5 + 0.45 * len(labels)) + 2), 4.5))
    for index, label in enumerate(labels):
        xs = [position + (index - (len(labels) - 1) / 2) * width for position in range(len(groups))]
        heights = [values[group][index] for group in groups]
        bars = ax.bar(xs, heights, width, label=label)
        ax.bar_label(bars, [texts[group][index] for group in groups], fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 5 else 0,
                  ha="right" if len(groups) > 5 else "center")
    ax.set_ylim(0, 110)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(labels) > 1:  # beside the axes, where no bar can be under it
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path
