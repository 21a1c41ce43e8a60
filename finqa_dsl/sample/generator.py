"""Seeded generator of synthetic FinQA-format examples: the project's embedded default data.

Every record has the official FinQA JSON layout (``pre_text``, ``post_text``, ``filename``, ``table_ori``,
``table``, ``id``, ``qa`` with ``question, answer, explanation, ann_table_rows, ann_text_rows, steps,
program, gold_inds, exe_ans, program_re``). Text and tables follow FinQA's normalised style (lowercase,
spaces around punctuation, ``$ 1234``, ``-36 ( 36 )``, ``12.5% ( 12.5 % )``). Each question comes from a
family with one program shape and a few phrasings, and its numbers are copied from the context, so the
data is learnable. ``exe_ans`` is computed by :func:`finqa_dsl.core.dsl.execute`.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from finqa_dsl.core.data import load_examples
from finqa_dsl.core.dsl import execute

DEFAULT_SEED = 2021
DEFAULT_SPLIT_SIZES: Mapping[str, int] = {"train": 400, "dev": 60, "test": 60}
ID_PREFIX = "SYN"

MONEY, PERCENT, INDEX = "money", "percent", "index"
STEP_NAMES = {
    "add": "add", "subtract": "minus", "multiply": "multiply", "divide": "divide", "exp": "exp",
    "greater": "compare_larger", "table_max": "max", "table_min": "min", "table_sum": "sum",
    "table_average": "average",
}


# ----------------------------------------------------------------------------------------- number style

def _number(value: float, decimals: int) -> str:
    """``1234`` / ``-16.2``: the literal a program copies (no thousands separators, as in FinQA)."""
    text = f"{abs(value):.{decimals}f}"
    return f"-{text}" if value < 0 else text


def _answer_number(value: float) -> str:
    rounded = round(value, 2)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.2f}".rstrip("0")


def _answer_text(value: float | str, percent: bool) -> str:
    if isinstance(value, str):
        return value
    return f"{value * 100:.1f}%" if percent else _answer_number(value)


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


# ------------------------------------------------------------------------------------------ tables

@dataclass(frozen=True)
class Row:
    """One table row: label, one value per column, and how its cells are written."""

    label: str
    values: tuple[float, ...]
    decimals: int = 0
    kind: str = MONEY
    dollar: bool = False

    def literal(self, column: int) -> str:
        """The program argument for a cell (``1234``, ``-16.2``, ``12.5%``)."""
        text = _number(self.values[column], self.decimals)
        return f"{text}%" if self.kind == PERCENT else text

    def cell(self, column: int) -> str:
        """The normalised ``table`` cell."""
        value = self.values[column]
        text = _number(abs(value), self.decimals)
        if self.kind == PERCENT:
            return f"{text}% ( {text} % )"
        dollar = "$ " if self.dollar else ""
        return f"{dollar}-{text} ( {text} )" if value < 0 else f"{dollar}{text}"

    def cell_original(self, column: int) -> str:
        """The ``table_ori`` cell as a filing prints it (``$1,234``, ``(16.2)``, ``12.5%``)."""
        value = self.values[column]
        text = f"{abs(value):,.{self.decimals}f}"
        if self.kind == PERCENT:
            return f"{text}%"
        text = f"({text})" if value < 0 else text
        return f"${text}" if self.dollar else text


@dataclass(frozen=True)
class Table:
    """A table with a corner cell, column headers (years) and rows."""

    title: str
    corner: str
    columns: tuple[str, ...]
    rows: tuple[Row, ...]

    def normalised(self) -> list[list[str]]:
        header = [self.corner, *self.columns]
        return [header] + [[row.label] + [row.cell(c) for c in range(len(self.columns))] for row in self.rows]

    def original(self) -> list[list[str]]:
        corner = re.sub(r"\( (.*) \)", r"(\1)", _capitalised(self.corner))
        header = [corner, *self.columns]
        return [header] + [
            [_capitalised(row.label)] + [row.cell_original(c) for c in range(len(self.columns))]
            for row in self.rows
        ]

    def index(self, row: Row) -> int:
        """The row's index in the normalised table (row 0 is the header)."""
        return self.rows.index(row) + 1

    def row(self, label: str) -> Row | None:
        return next((row for row in self.rows if row.label == label), None)


def row_text(header: list[str], row: list[str]) -> str:
    """Linearise a table row as the official ``gold_inds`` do: ``the <row> of <col> is <cell> ;``."""
    text = f"{header[0]} " if header[0] else ""
    cells = zip(header[1:], row[1:], strict=False)
    text += "".join(f"the {row[0]} of {head} is {cell} ; " for head, cell in cells)
    return re.sub(" +", " ", text).strip()


def _series(rng: random.Random, latest: float, count: int, decimals: int,
            growth: tuple[float, float] = (-0.08, 0.18)) -> tuple[float, ...]:
    """``count`` values, latest first, each year differing from the next by a non-trivial growth rate."""
    values = [round(latest, decimals)]
    while len(values) < count:
        rate = rng.uniform(*growth)
        rate = rate if abs(rate) >= 0.02 else 0.02 + abs(rate)
        values.append(round(values[-1] / (1 + rate), decimals))
    return tuple(values)


def _share(rng: random.Random, base: tuple[float, ...], low: float, high: float,
           decimals: int) -> tuple[float, ...]:
    return tuple(round(value * rng.uniform(low, high), decimals) for value in base)


def _combine(decimals: int, *parts: tuple[float, ...],
             signs: tuple[int, ...] | None = None) -> tuple[float, ...]:
    signs = signs or (1,) * len(parts)
    return tuple(round(sum(s * p[i] for s, p in zip(signs, parts, strict=True)), decimals)
                 for i in range(len(parts[0])))


def _pick_in_order(rng: random.Random, items: list, count: int) -> list:
    chosen = set(rng.sample(range(len(items)), count))
    return [item for i, item in enumerate(items) if i in chosen]


def _corner(rng: random.Random) -> str:
    return rng.choice(["( in millions )", "in millions", "( dollars in millions )", "", "$ in millions"])


def _income_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    d = rng.choice([0, 0, 1])
    sales = _series(rng, rng.uniform(900, 24000), len(years), d)
    cost = _share(rng, sales, 0.52, 0.7, d)
    gross = _combine(d, sales, cost, signs=(1, -1))
    sga = _share(rng, sales, 0.1, 0.2, d)
    operating = _combine(d, gross, sga, signs=(1, -1))
    middle = [Row("cost of sales", cost, d), Row("gross profit", gross, d),
              Row("selling general and administrative expenses", sga, d),
              Row("operating income", operating, d),
              Row("interest expense", _share(rng, sales, 0.005, 0.03, d), d)]
    rows = [Row(company.sales_label, sales, d, dollar=True), *_pick_in_order(rng, middle, rng.randint(2, 4)),
            Row("net income", _share(rng, operating, 0.6, 0.8, d), d, dollar=True)]
    return Table("selected financial data", _corner(rng), tuple(map(str, years)), tuple(rows))


def _segment_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    d = rng.choice([0, 0, 1])
    metric = rng.choice(["net sales", "revenues", "operating profit"])
    segments = _pick_in_order(rng, company.sector.segments, 3)
    parts = [_series(rng, rng.uniform(150, 6000), len(years), d) for _ in segments]
    rows = [Row(name, values, d, dollar=name == segments[0])
            for name, values in zip(segments, parts, strict=True)]
    rows.append(Row(f"total {metric}", _combine(d, *parts), d, dollar=True))
    return Table(f"{metric} by segment", _corner(rng), tuple(map(str, years)), tuple(rows))


def _cash_flow_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    d = rng.choice([0, 0, 1])
    operating = _series(rng, rng.uniform(400, 9000), len(years), d)
    investing = _share(rng, operating, -0.9, -0.3, d)
    financing = _share(rng, operating, -0.8, -0.2, d)
    exchange = tuple(round(rng.choice([-1, 1]) * rng.uniform(3, 60), d) for _ in years)
    rows = [Row("net cash provided by operating activities", operating, d, dollar=True),
            Row("net cash used in investing activities", investing, d),
            Row("net cash used in financing activities", financing, d)]
    if rng.random() < 0.5:
        rows.append(Row("effect of exchange rate changes on cash", exchange, d))
    net_change = _combine(d, *(row.values for row in rows))
    rows.append(Row("net change in cash and cash equivalents", net_change, d, dollar=True))
    return Table("cash flows", _corner(rng), tuple(map(str, years)), tuple(rows))


def _margin_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    d = rng.choice([0, 1])
    sales = _series(rng, rng.uniform(900, 24000), len(years), d)
    ratios = {"gross margin": (25, 55), "operating margin": (6, 22), "effective tax rate": (18, 34),
              "return on average equity": (6, 20)}
    chosen = _pick_in_order(rng, list(ratios), rng.randint(2, 3))
    rows = [Row(company.sales_label, sales, d, dollar=True)]
    for name in chosen:
        low, high = ratios[name]
        rows.append(Row(name, _distinct(rng, low, high, len(years), 1), 1, PERCENT))
    return Table("key performance measures", _corner(rng), tuple(map(str, years)), tuple(rows))


def _bank_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    d = rng.choice([0, 0, 1])
    interest = _series(rng, rng.uniform(800, 15000), len(years), d)
    noninterest = _share(rng, interest, 0.4, 0.9, d)
    expense = _share(rng, interest, 0.7, 1.1, d)
    rows = [Row("net interest income", interest, d, dollar=True), Row("noninterest income", noninterest, d),
            Row("total revenue", _combine(d, interest, noninterest), d, dollar=True),
            Row("provision for credit losses", _share(rng, interest, 0.03, 0.15, d), d),
            Row("noninterest expense", expense, d),
            Row("net income", _share(rng, interest, 0.2, 0.45, d), d, dollar=True)]
    rows = rows[:3] + _pick_in_order(rng, rows[3:5], rng.randint(1, 2)) + rows[5:]
    return Table("summary results of operations", _corner(rng), tuple(map(str, years)), tuple(rows))


def _stock_table(rng: random.Random, company: Company, years: tuple[int, ...]) -> Table:
    columns = tuple(f"12/31/{year}" for year in sorted(years))
    base_year = min(years)
    labels = [company.short_name, "s&p 500 index", rng.choice(company.sector.indices)]
    rows = []
    for i, label in enumerate(labels):
        values = [100.0]
        for _ in columns[1:]:
            values.append(round(values[-1] * (1 + rng.uniform(-0.15, 0.3)), 2))
        rows.append(Row(label, tuple(values), 2, INDEX, dollar=i == 0))
    title = f"cumulative total shareholder return ( assumes $ 100 invested on 12/31/{base_year} )"
    return Table(title, "", columns, tuple(rows))


def _distinct(rng: random.Random, low: float, high: float, count: int, decimals: int) -> tuple[float, ...]:
    values: list[float] = []
    while len(values) < count:
        value = round(rng.uniform(low, high), decimals)
        if value not in values:
            values.append(value)
    return tuple(values)


TABLE_BUILDERS: dict[str, Callable[[random.Random, Company, tuple[int, ...]], Table]] = {
    "income": _income_table, "segments": _segment_table, "cash_flow": _cash_flow_table,
    "margins": _margin_table, "bank": _bank_table, "stock": _stock_table,
}
GENERIC_TOPICS = ("income", "segments", "cash_flow", "margins", "bank")


# ---------------------------------------------------------------------------------------- companies

@dataclass(frozen=True)
class Sector:
    name: str
    suffixes: tuple[str, ...]
    description: str
    segments: list[str]
    indices: list[str]
    sales_labels: tuple[str, ...]


SECTORS = (
    Sector("industrial", ("industries", "corporation", "manufacturing co ."),
           "a diversified industrial manufacturer",
           ["aerospace systems", "industrial automation", "climate solutions", "power tools",
            "engineered components"], ["s&p industrials index", "dow jones us industrial machinery index"],
           ("net sales", "revenues")),
    Sector("energy", ("energy", "resources", "petroleum corporation"), "an independent energy company",
           ["upstream", "midstream", "refining and marketing", "chemicals", "renewable power"],
           ["s&p energy index", "dow jones us oil and gas index"], ("total revenues", "revenues")),
    Sector("bank", ("financial corp", "bancorp", "financial group"), "a bank holding company",
           ["consumer banking", "commercial banking", "wealth management",
            "corporate and investment banking"],
           ["kbw bank index", "s&p financials index"], ("total revenue", "net revenues")),
    Sector("retail", ("stores inc .", "brands", "retail group"), "a specialty retailer",
           ["north america", "international", "e-commerce", "wholesale"],
           ["s&p retail index", "dow jones us general retailers index"], ("net sales", "net revenues")),
    Sector("technology", ("technologies", "systems", "software inc ."), "a provider of enterprise technology",
           ["cloud services", "software licenses", "hardware", "professional services"],
           ["nasdaq composite index", "s&p information technology index"], ("revenues", "total revenues")),
    Sector("healthcare", ("pharmaceuticals", "health", "medical inc ."), "a global healthcare company",
           ["pharmaceuticals", "medical devices", "diagnostics", "consumer health"],
           ["s&p health care index", "nyse arca pharmaceutical index"], ("net sales", "revenues")),
    Sector("utility", ("utilities", "power company", "electric co ."), "a regulated utility holding company",
           ["electric transmission", "gas distribution", "generation", "competitive services"],
           ["s&p utilities index", "philadelphia utility index"], ("operating revenues", "total revenues")),
)

NAME_STEMS = ("northbridge", "calder", "harbor point", "summit ridge", "bluewater", "ironwood", "meridian",
              "crescent", "silverline", "pinecrest", "redstone", "oakmont", "lakeshore", "granite peak",
              "cobalt", "evergreen", "stonegate", "riverbend", "highmark", "clearwater", "falcon ridge",
              "westbrook", "amberly", "kingsport", "sterling bay", "northstar", "copperfield", "bayview")


@dataclass(frozen=True)
class Company:
    short_name: str
    name: str
    sector: Sector
    sales_label: str


def _company(rng: random.Random, sector: Sector) -> Company:
    stem = rng.choice(NAME_STEMS)
    suffix = rng.choice(sector.suffixes)
    short_name = f"{stem} {suffix.split(' ')[0]}"
    return Company(short_name, f"{stem} {suffix}", sector, rng.choice(sector.sales_labels))


# ------------------------------------------------------------------------------------------- documents

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
FILLER = (
    "management's discussion and analysis of financial condition and results of operations .",
    "the following discussion should be read in conjunction with our consolidated financial statements .",
    "we believe our existing cash and credit facilities are sufficient to meet our liquidity needs .",
    "see note 12 to the consolidated financial statements for further information .",
    "results for prior periods have been reclassified to conform to the current presentation .",
    "changes in foreign currency exchange rates did not have a material effect on our results .",
    "our estimates are based on historical experience and other assumptions we believe are reasonable .",
    "the company has no off-balance sheet arrangements other than those described below .",
    "forward-looking statements involve risks and uncertainties that could cause actual results to differ .",
    "we continue to evaluate opportunities to return cash to shareholders .",
    "the decrease was partially offset by higher pricing and a favorable product mix .",
    "the increase was primarily due to higher volumes in our core markets .",
    "we do not expect the adoption of this standard to have a material impact on our financial statements .",
    "critical accounting estimates are discussed in the section that follows .",
)
NOTE_RATES = ("2.25", "2.75", "3.125", "3.5", "3.95", "4.25", "4.875", "5.5", "6.0", "6.625", "7.25")
TEXT_ITEMS = ("advertising costs", "restructuring charges", "rental payments",  # plural: sentences say "were"
              "stock-based compensation costs", "depreciation charges", "amortization charges",
              "capital expenditures", "pension contributions", "environmental remediation costs",
              "warranty costs")


@dataclass
class Document:
    """A filing page: company, years, a table and text sentences, before indices are fixed."""

    company: Company
    year: int
    table: Table
    pre: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)

    @property
    def years(self) -> tuple[int, ...]:
        return (self.year, self.year - 1, self.year - 2)

    def add(self, rng: random.Random, sentence: str) -> str:
        """Insert a sentence at a random place (before the table's introduction, or after the table)."""
        if rng.random() < 0.5:
            self.pre.insert(rng.randint(0, len(self.pre) - 1), sentence)
        else:
            self.post.insert(rng.randint(0, len(self.post)), sentence)
        return sentence

    def unused_text_item(self, rng: random.Random) -> str:
        text = " ".join(self.pre + self.post)
        return rng.choice([item for item in TEXT_ITEMS if item not in text])


def _document(rng: random.Random, topic: str) -> Document:
    sector = next(s for s in SECTORS if s.name == "bank") if topic == "bank" else rng.choice(SECTORS)
    company = _company(rng, sector)
    year = rng.randint(2009, 2021)
    table = TABLE_BUILDERS[topic](rng, company, (year, year - 1, year - 2))
    if topic == "stock":
        intro = f"the following graph compares the {table.title} of {company.name} with the s&p 500 index ."
    else:
        intro = f"the following table presents our {table.title} ( in millions ) ."
    filler = rng.sample(FILLER, rng.randint(2, 4))
    cut = rng.randint(1, len(filler) - 1)
    pre = [f"{company.name} is {sector.description} .", *filler[:cut], intro]
    doc = Document(company, year, table, pre, filler[cut:])
    for _ in range(rng.randint(0, 1)):
        doc.add(rng, _comparison_fact(rng, doc.unused_text_item(rng), year)[0])
    return doc


# ------------------------------------------------------------------------------------- text facts

def _money(rng: random.Random, low: float, high: float) -> str:
    return _number(rng.uniform(low, high), rng.choice([0, 1, 1]))


def _comparison_fact(rng: random.Random, item: str, year: int) -> tuple[str, str, str]:
    """A sentence giving ``item`` for two years; returns (sentence, latest literal, prior literal)."""
    decimals = rng.choice([0, 1, 1])
    latest_value = rng.uniform(40, 900)
    prior_value = latest_value / (1 + rng.choice([-1, 1]) * rng.uniform(0.03, 0.35))
    latest, prior = _number(latest_value, decimals), _number(prior_value, decimals)
    sentence = rng.choice([
        f"{item} were $ {latest} million in {year} compared to $ {prior} million in {year - 1} .",
        f"{item} totaled $ {latest} million and $ {prior} million in {year} and {year - 1} , respectively .",
    ])
    return sentence, latest, prior


def _percent_literal(rng: random.Random, low: float, high: float) -> str:
    return _number(rng.uniform(low, high), rng.choice([0, 1]))


# ----------------------------------------------------------------------------------------- questions

@dataclass(frozen=True)
class Draft:
    """A question before indexing: its program steps and the evidence it reads."""

    question: str
    steps: tuple[tuple[str, str, str], ...]
    evidence: tuple[Row | str, ...]  # table rows, or text sentences
    percent: bool = False


def _rows(doc: Document, kind: str | None = None, *, exclude_total: bool = False) -> list[Row]:
    return [row for row in doc.table.rows
            if (kind is None or row.kind == kind) and not (exclude_total and row.label.startswith("total"))]


def _positive_rows(doc: Document) -> list[Row]:
    return [row for row in _rows(doc, MONEY) if min(row.values) > 0]


def _two_years(rng: random.Random) -> tuple[int, int]:
    """(later column, earlier column) as column indices of a year-columned table."""
    later = rng.choice([0, 0, 1])
    return later, later + 1


def _change(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_rows(doc, MONEY))
    a, b = _two_years(rng)
    y1, y0 = doc.years[a], doc.years[b]
    question = rng.choice([f"what was the change in {row.label} from {y0} to {y1}?",
                           f"by how much did {row.label} change between {y0} and {y1} , in millions?",
                           f"what was the net change in {row.label} from {y0} to {y1}?"])
    return Draft(question, (("subtract", row.literal(a), row.literal(b)),), (row,))


def _percent_change(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_positive_rows(doc) or [None])
    if row is None:
        return None
    a, b = _two_years(rng)
    y1, y0 = doc.years[a], doc.years[b]
    question = rng.choice([f"what was the percentage change in {row.label} from {y0} to {y1}?",
                           f"what was the growth rate of {row.label} from {y0} to {y1}?",
                           f"what is the percent change in {row.label} between {y0} and {y1}?"])
    steps = (("subtract", row.literal(a), row.literal(b)), ("divide", "#0", row.literal(b)))
    return Draft(question, steps, (row,), percent=True)


def _share_of_total(rng: random.Random, doc: Document) -> Draft | None:
    total = doc.table.rows[-1]
    col = rng.choice([0, 1, 2])
    part = rng.choice(doc.table.rows[:-1])
    year = doc.years[col]
    question = rng.choice([f"what percentage of {total.label} in {year} came from {part.label}?",
                           f"in {year} , what portion of {total.label} was attributable to {part.label}?",
                           f"{part.label} represented what percent of {total.label} in {year}?"])
    return Draft(question, (("divide", part.literal(col), total.literal(col)),), (part, total), percent=True)


def _sum_of_rows(rng: random.Random, doc: Document) -> Draft | None:
    first, second = rng.sample(_rows(doc, MONEY, exclude_total=True), 2)
    col = rng.choice([0, 1, 2])
    year = doc.years[col]
    question = rng.choice([f"what was the combined {first.label} and {second.label} in {year}?",
                           f"what is the sum of {first.label} and {second.label} in {year} , in millions?"])
    return Draft(question, (("add", first.literal(col), second.literal(col)),), (first, second))


def _two_year_average(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_rows(doc, MONEY))
    a, b = _two_years(rng)
    question = rng.choice([f"what was the average {row.label} for {doc.years[a]} and {doc.years[b]}?",
                           f"what is the average of {row.label} in {doc.years[b]} and {doc.years[a]}?"])
    steps = (("add", row.literal(a), row.literal(b)), ("divide", "#0", "const_2"))
    return Draft(question, steps, (row,))


def _table_op(op: str, phrasings: tuple[str, ...]) -> Callable[[random.Random, Document], Draft | None]:
    def build(rng: random.Random, doc: Document) -> Draft | None:
        row = rng.choice(doc.table.rows)
        first, last = min(doc.years), max(doc.years)
        question = rng.choice(phrasings).format(row=row.label, first=first, last=last)
        return Draft(question, ((op, row.label, "none"),), (row,), percent=row.kind == PERCENT)
    return build


_table_max = _table_op("table_max", ("what was the highest {row} from {first} to {last}?",
                                     "what was the maximum {row} during the three year period?"))
_table_min = _table_op("table_min", ("what was the lowest {row} from {first} to {last}?",
                                     "what was the minimum {row} during the three year period?"))
_table_sum = _table_op("table_sum", ("what was the sum of {row} for the three year period?",
                                     "what is the sum of {row} from {first} to {last}?"))
_table_average = _table_op("table_average", ("what was the average {row} from {first} to {last}?",
                                             "what was the average {row} over the three year period?"))


def _table_range(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(doc.table.rows)
    question = rng.choice([f"what is the difference between the highest and lowest {row.label}"
                           " in the period?",
                           f"what was the range of {row.label} over the three years?"])
    steps = (("table_max", row.label, "none"), ("table_min", row.label, "none"), ("subtract", "#0", "#1"))
    return Draft(question, steps, (row,), percent=row.kind == PERCENT)


def _peak_above_average(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(doc.table.rows)
    question = f"how much higher was the peak {row.label} than its three year average?"
    steps = (("table_average", row.label, "none"), ("table_max", row.label, "none"), ("subtract", "#1", "#0"))
    return Draft(question, steps, (row,), percent=row.kind == PERCENT)


def _greater_years(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(doc.table.rows)
    a, b = _two_years(rng)
    y1, y0 = doc.years[a], doc.years[b]
    if rng.random() < 0.5:
        question = rng.choice([f"did {row.label} increase from {y0} to {y1}?",
                               f"was {row.label} higher in {y1} than in {y0}?"])
        return Draft(question, (("greater", row.literal(a), row.literal(b)),), (row,))
    question = f"was {row.label} greater in {y0} than in {y1}?"
    return Draft(question, (("greater", row.literal(b), row.literal(a)),), (row,))


def _greater_rows(rng: random.Random, doc: Document) -> Draft | None:
    first, second = rng.sample(_rows(doc, MONEY, exclude_total=True), 2)
    col = rng.choice([0, 1, 2])
    question = rng.choice([f"in {doc.years[col]} , was {first.label} greater than {second.label}?",
                           f"did {first.label} exceed {second.label} in {doc.years[col]}?"])
    return Draft(question, (("greater", first.literal(col), second.literal(col)),), (first, second))


def _greater_changes(rng: random.Random, doc: Document) -> Draft | None:
    first, second = rng.sample(_rows(doc, MONEY), 2)
    a, b = _two_years(rng)
    question = (f"was the change in {first.label} from {doc.years[b]} to {doc.years[a]} greater than "
                f"the change in {second.label}?")
    steps = (("subtract", first.literal(a), first.literal(b)),
             ("subtract", second.literal(a), second.literal(b)),
             ("greater", "#0", "#1"))
    return Draft(question, steps, (first, second))


def _ratio(rng: random.Random, doc: Document) -> Draft | None:
    first, second = rng.sample(_positive_rows(doc), 2) if len(_positive_rows(doc)) > 1 else (None, None)
    if first is None:
        return None
    col = rng.choice([0, 1, 2])
    question = f"what was the ratio of {first.label} to {second.label} in {doc.years[col]}?"
    return Draft(question, (("divide", first.literal(col), second.literal(col)),), (first, second))


def _scale(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_rows(doc, MONEY))
    col = rng.choice([0, 1, 2])
    if rng.random() < 0.5:
        question = f"what was {row.label} in {doc.years[col]} , in thousands?"
        return Draft(question, (("multiply", row.literal(col), "const_1000"),), (row,))
    question = f"what was {row.label} in {doc.years[col]} , in billions?"
    return Draft(question, (("divide", row.literal(col), "const_1000"),), (row,))


def _cash_used(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice([row for row in doc.table.rows if "used in" in row.label])
    col = rng.choice([0, 1, 2])
    question = f"how much {row.label.replace('net cash used in ', 'cash was used in ')} in {doc.years[col]}?"
    return Draft(question, (("multiply", row.literal(col), "const_m1"),), (row,))


def _percentage_points(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_rows(doc, PERCENT))
    a, b = _two_years(rng)
    question = rng.choice([f"by how many percentage points did {row.label} change from {doc.years[b]} to "
                           f"{doc.years[a]}?",
                           f"what was the change in {row.label} from {doc.years[b]} to {doc.years[a]} , "
                           "in percentage points?"])
    steps = (("subtract", row.literal(a), row.literal(b)), ("multiply", "#0", "const_100"))
    return Draft(question, steps, (row,))


def _cumulative_return(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(doc.table.rows)
    first, last = min(doc.years), max(doc.years)
    question = rng.choice([f"what was the cumulative total return of {row.label} from {first} to {last}?",
                           f"what was the percentage return on an investment in {row.label} "
                           f"from {first} to {last}?"])
    steps = (("subtract", row.literal(len(doc.years) - 1), "const_100"), ("divide", "#0", "const_100"))
    return Draft(question, steps, (row,), percent=True)


def _outperform(rng: random.Random, doc: Document) -> Draft | None:
    company, market = doc.table.rows[0], rng.choice(doc.table.rows[1:])
    last = len(doc.years) - 1
    question = f"did {company.label} outperform the {market.label} from {min(doc.years)} to {max(doc.years)}?"
    return Draft(question, (("greater", company.literal(last), market.literal(last)),), (company, market))


def _repurchase_cost(rng: random.Random, doc: Document) -> Draft | None:
    shares, price = _number(rng.uniform(0.5, 20), 1), _number(rng.uniform(15, 250), 2)
    sentence = doc.add(rng, f"during {doc.year} , we repurchased {shares} million shares of our common "
                            f"stock at an average price of $ {price} per share .")
    question = rng.choice([f"what was the total cost of the shares repurchased in {doc.year} , in millions?",
                           f"how much did the company spend on share repurchases in {doc.year} , "
                           "in millions?"])
    return Draft(question, (("multiply", shares, price),), (sentence,))


def _annual_dividend(rng: random.Random, doc: Document) -> Draft | None:
    dividend = _number(rng.uniform(0.1, 1.5), 2)
    sentence = doc.add(rng, f"in {doc.year} , the board of directors declared quarterly cash dividends of "
                            f"$ {dividend} per share .")
    question = rng.choice([f"what was the total annual dividend per share declared in {doc.year}?",
                           f"what were the dividends declared per share for the full year {doc.year}?"])
    return Draft(question, (("multiply", dividend, "const_4"),), (sentence,))


def _note_interest(rng: random.Random, doc: Document) -> Draft | None:
    principal = str(rng.randrange(250, 2500, 50))
    rate = rng.choice(NOTE_RATES)
    due = doc.year + rng.randint(3, 30)
    sentence = doc.add(rng, f"in {rng.choice(MONTHS)} {doc.year} , we issued $ {principal} million of "
                            f"senior notes due {due} that bear interest at a fixed rate of {rate}% "
                            f"( {rate} % ) per year .")
    question = f"what is the annual interest expense on the senior notes due {due} , in millions?"
    return Draft(question, (("multiply", principal, f"{rate}%"),), (sentence,))


def _projected_growth(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_positive_rows(doc) or [None])
    if row is None:
        return None
    rate, years = _percent_literal(rng, 2, 12), str(rng.randint(2, 6))
    sentence = doc.add(rng, f"management expects {row.label} to grow at an annual rate of {rate}% "
                            f"( {rate} % ) over the next {years} years .")
    question = (f"if {row.label} grows at the expected annual rate from its {doc.year} level , "
                f"what will it be in {years} years , in millions?")
    steps = (("add", "const_1", f"{rate}%"), ("exp", "#0", years), ("multiply", row.literal(0), "#1"))
    return Draft(question, steps, (row, sentence))


def _compound_growth(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice(_positive_rows(doc) or [None])
    if row is None:
        return None
    first, last = min(doc.years), max(doc.years)
    question = f"what was the compound annual growth rate of {row.label} from {first} to {last}?"
    steps = (("divide", row.literal(0), row.literal(2)), ("divide", "const_1", "const_2"),
             ("exp", "#0", "#1"), ("subtract", "#2", "const_1"))
    return Draft(question, steps, (row,), percent=True)


def _prior_year_from_growth(rng: random.Random, doc: Document) -> Draft | None:
    item = doc.unused_text_item(rng)
    rate, value = _percent_literal(rng, 3, 25), _money(rng, 40, 900)
    sentence = doc.add(rng, f"{item} increased {rate}% ( {rate} % ) to $ {value} million in {doc.year} .")
    question = f"what were {item} in {doc.year - 1} , in millions?"
    return Draft(question, (("add", "const_1", f"{rate}%"), ("divide", value, "#0")), (sentence,))


def _text_percent_change(rng: random.Random, doc: Document) -> Draft | None:
    item = doc.unused_text_item(rng)
    sentence, latest, prior = _comparison_fact(rng, item, doc.year)
    doc.add(rng, sentence)
    question = rng.choice([f"what was the percentage change in {item} from {doc.year - 1} to {doc.year}?",
                           f"what was the growth rate of {item} from {doc.year - 1} to {doc.year}?"])
    return Draft(question, (("subtract", latest, prior), ("divide", "#0", prior)), (sentence,), percent=True)


def _text_increase(rng: random.Random, doc: Document) -> Draft | None:
    item = doc.unused_text_item(rng)
    sentence, latest, prior = _comparison_fact(rng, item, doc.year)
    doc.add(rng, sentence)
    question = f"did {item} increase from {doc.year - 1} to {doc.year}?"
    return Draft(question, (("greater", latest, prior),), (sentence,))


def _text_three_year_average(rng: random.Random, doc: Document) -> Draft | None:
    item = doc.unused_text_item(rng)
    decimals = rng.choice([0, 1, 1])
    values = [_number(value, decimals) for value in _series(rng, rng.uniform(40, 900), 3, decimals)]
    y = doc.year
    sentence = doc.add(rng, f"{item} were $ {values[0]} million , $ {values[1]} million and "
                            f"$ {values[2]} million in {y} , {y - 1} and {y - 2} , respectively .")
    question = f"what were average {item} from {y - 2} to {y} , in millions?"
    steps = (("add", values[0], values[1]), ("add", "#0", values[2]), ("divide", "#1", "const_3"))
    return Draft(question, steps, (sentence,))


def _text_share_of_row(rng: random.Random, doc: Document) -> Draft | None:
    row = rng.choice([row for row in _positive_rows(doc) if min(row.values) > 100] or [None])
    if row is None:
        return None
    item = doc.unused_text_item(rng)
    value = _money(rng, 5, min(row.values[0] * 0.3, 900))
    sentence = doc.add(rng, f"{item} were $ {value} million in {doc.year} .")
    question = f"what were {item} as a percentage of {row.label} in {doc.year}?"
    return Draft(question, (("divide", value, row.literal(0)),), (sentence, row), percent=True)


def _shares_outstanding(rng: random.Random, doc: Document) -> Draft | None:
    shares = str(rng.randrange(40_000_000, 900_000_000))
    when = f"{rng.choice(MONTHS)} {rng.randint(1, 28)} , {doc.year + 1}"
    sentence = doc.add(rng, f"as of {when} , there were {shares} shares of our common stock outstanding .")
    question = f"how many shares of common stock were outstanding as of {when} , in millions?"
    return Draft(question, (("divide", shares, "const_1000000"),), (sentence,))


def _earnings_per_share(rng: random.Random, doc: Document) -> Draft | None:
    row = doc.table.row("net income")
    if row is None or row.values[0] <= 0:
        return None
    shares = _number(rng.uniform(row.values[0] / 12, row.values[0] / 1.5), 1)
    sentence = doc.add(rng, f"weighted average diluted shares outstanding were {shares} million "
                            f"in {doc.year} .")
    question = f"what were diluted earnings per share in {doc.year}?"
    return Draft(question, (("divide", row.literal(0), shares),), (row, sentence))


@dataclass(frozen=True)
class Family:
    """A question family: one program shape, a weight, and the table topics it can use."""

    name: str
    weight: int
    build: Callable[[random.Random, Document], Draft | None]
    topics: tuple[str, ...] = GENERIC_TOPICS


FAMILIES = (
    Family("change", 6, _change),
    Family("percent_change", 7, _percent_change),
    Family("share_of_total", 4, _share_of_total, ("segments",)),
    Family("sum_of_rows", 3, _sum_of_rows, ("income", "segments", "bank")),
    Family("two_year_average", 3, _two_year_average),
    Family("table_max", 3, _table_max),
    Family("table_min", 3, _table_min),
    Family("table_sum", 4, _table_sum),
    Family("table_average", 3, _table_average),
    Family("table_range", 2, _table_range),
    Family("peak_above_average", 2, _peak_above_average),
    Family("greater_years", 4, _greater_years),
    Family("greater_rows", 2, _greater_rows, ("income", "segments", "bank")),
    Family("greater_changes", 2, _greater_changes, ("income", "segments", "bank")),
    Family("ratio", 2, _ratio, ("income", "segments", "bank")),
    Family("scale", 2, _scale),
    Family("cash_used", 2, _cash_used, ("cash_flow",)),
    Family("percentage_points", 3, _percentage_points, ("margins",)),
    Family("cumulative_return", 3, _cumulative_return, ("stock",)),
    Family("outperform", 2, _outperform, ("stock",)),
    Family("repurchase_cost", 3, _repurchase_cost),
    Family("annual_dividend", 2, _annual_dividend),
    Family("note_interest", 3, _note_interest),
    Family("projected_growth", 2, _projected_growth),
    Family("compound_growth", 2, _compound_growth),
    Family("prior_year_from_growth", 2, _prior_year_from_growth),
    Family("text_percent_change", 3, _text_percent_change),
    Family("text_increase", 2, _text_increase),
    Family("text_three_year_average", 2, _text_three_year_average),
    Family("text_share_of_row", 2, _text_share_of_row),
    Family("shares_outstanding", 2, _shares_outstanding),
    Family("earnings_per_share", 2, _earnings_per_share, ("income", "bank")),
)


# ------------------------------------------------------------------------------------------ records

def program_string(steps: tuple[tuple[str, str, str], ...]) -> str:
    """``op(a, b), op(#0, c)``: the official ``program`` form."""
    return ", ".join(f"{op}({first}, {second})" for op, first, second in steps)


def nested_program(steps: tuple[tuple[str, str, str], ...]) -> str:
    """The official ``program_re`` form: ``#k`` references replaced by the step they name."""
    rendered: list[str] = []
    for op, first, second in steps:
        args = [rendered[int(arg[1:])] if arg.startswith("#") else arg for arg in (first, second)]
        rendered.append(f"{op}({args[0]}, {args[1]})")
    return rendered[-1]


def _record(rng: random.Random, doc: Document, draft: Draft, page: int) -> dict:
    table = doc.table.normalised()
    text = doc.pre + doc.post
    table_rows = sorted(doc.table.index(item) for item in draft.evidence if isinstance(item, Row))
    text_rows = sorted(text.index(item) for item in draft.evidence if isinstance(item, str))
    gold_inds = {f"table_{i}": row_text(table[0], table[i]) for i in table_rows}
    gold_inds |= {f"text_{i}": text[i] for i in text_rows}
    program = program_string(draft.steps)
    steps = []
    annotator = rng.choice("12")
    for k, (op, first, second) in enumerate(draft.steps):
        partial = _execute_or_fail(program_string(draft.steps[: k + 1]), table, draft.question)
        last = k == len(draft.steps) - 1
        steps.append({"op": f"{STEP_NAMES[op]}{annotator}-{k + 1}", "arg1": first, "arg2": second,
                      "res": _answer_text(partial, draft.percent and last)})
    exe_ans = _execute_or_fail(program, table, draft.question)
    filename = f"{ID_PREFIX}/{doc.year + 1}/page_{page}.pdf"
    return {
        "pre_text": doc.pre,
        "post_text": doc.post,
        "filename": filename,
        "table_ori": doc.table.original(),
        "table": table,
        "qa": {
            "question": draft.question,
            "answer": _answer_text(exe_ans, draft.percent),
            "explanation": "",
            "ann_table_rows": table_rows,
            "ann_text_rows": text_rows,
            "steps": steps,
            "program": program,
            "gold_inds": gold_inds,
            "exe_ans": exe_ans,
            "program_re": nested_program(draft.steps),
        },
        "id": f"{filename}-{rng.randint(0, 4)}",
    }


def _execute_or_fail(program: str, table: list[list[str]], question: str) -> float | str:
    result = execute(program, table)
    if not result.ok:
        raise RuntimeError(f"synthetic program {program!r} for {question!r} does not execute: "
                           f"{result.reason}")
    return result.value


def _schedule(rng: random.Random, count: int) -> list[Family]:
    """Families for ``count`` examples: each once (when count allows), the rest in proportion to weight."""
    if count < len(FAMILIES):
        return rng.sample(FAMILIES, count)
    remaining = count - len(FAMILIES)
    total = sum(family.weight for family in FAMILIES)
    quotas = [remaining * family.weight / total for family in FAMILIES]
    extra = [int(quota) for quota in quotas]
    by_remainder = sorted(range(len(FAMILIES)), key=lambda i: extra[i] - quotas[i])
    for i in by_remainder[: remaining - sum(extra)]:
        extra[i] += 1
    families = [family for family, n in zip(FAMILIES, extra, strict=True) for _ in range(1 + n)]
    rng.shuffle(families)
    return families


def generate_examples(count: int, *, seed: int = DEFAULT_SEED, split: str = "train",
                      used_pages: set[tuple[int, int]] | None = None) -> list[dict]:
    """``count`` synthetic records, a pure function of (seed, split, used_pages). ``used_pages`` holds the
    (year, page) pairs other splits took, so ids stay unique across splits; this call adds its own."""
    rng = random.Random(f"finqa-synthetic:{seed}:{split}")
    used_pages = set() if used_pages is None else used_pages
    records = []
    for family in _schedule(rng, count):
        draft = None
        while draft is None:
            doc = _document(rng, rng.choice(family.topics))
            draft = family.build(rng, doc)
        page = rng.randint(10, 250)
        while (doc.year, page) in used_pages:
            page = rng.randint(10, 250)
        used_pages.add((doc.year, page))
        records.append(_record(rng, doc, draft, page))
    return records


def generate_splits(sizes: Mapping[str, int] = DEFAULT_SPLIT_SIZES, *,
                    seed: int = DEFAULT_SEED) -> dict[str, list[dict]]:
    """Every split, in ``sizes`` order, with ids unique across splits."""
    used_pages: set[tuple[int, int]] = set()
    return {split: generate_examples(count, seed=seed, split=split, used_pages=used_pages)
            for split, count in sizes.items()}


def dumps_split(records: list[dict]) -> str:
    """The committed file text: JSON with a one-space indent and a trailing newline."""
    return json.dumps(records, indent=1, ensure_ascii=False) + "\n"


def validate_file(path: str | os.PathLike) -> int:
    """Load ``path`` with :func:`finqa_dsl.core.data.load_examples` and re-execute every program against its
    table; raise ``ValueError`` naming the file and record on the first mismatch. Returns the count."""
    examples = load_examples(path)
    for example in examples:
        result = execute(example.program, example.table)
        if not result.ok or result.value != example.exe_ans:
            raise ValueError(f"{path}: record {example.id}: field 'qa.exe_ans': {example.exe_ans!r}, but "
                             f"{example.program!r} executes to {result.value!r} ({result.reason})")
        if not example.gold_inds:
            raise ValueError(f"{path}: record {example.id}: field 'qa.gold_inds': at least one entry")
    return len(examples)
