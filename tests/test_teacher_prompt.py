"""The teacher's few-shot prompt on real FinQA examples, and code extraction from the replies teachers write."""

from __future__ import annotations

import pytest

from finqa_dsl.core.context import ContextConfig
from finqa_dsl.core.data import load_examples
from finqa_dsl.core.python_code import extract_code
from finqa_dsl.distill.teacher_prompt import END_PYTHON, HINT, PYTHON, SolvedShot, teacher_messages

ALL = ContextConfig(input_mode="all")


@pytest.fixture(scope="module")
def train(real_finqa_dir):
    return load_examples(real_finqa_dir / "train.json")


def test_prompt_shows_each_shot_solved_then_the_question_open(train):
    shots = [SolvedShot(example, f"x = 1\nans = x + {i}") for i, example in enumerate(train[:4])]
    messages = teacher_messages(train[10], shots, ALL, hint=False)
    user = messages[1]["content"]
    assert messages[0]["role"] == "system" and "`ans`" in messages[0]["content"]
    assert user.count(PYTHON) == 5 and user.count(END_PYTHON) == 4 and user.endswith(f"{PYTHON}\n")
    assert user.rindex(train[10].question) > user.rindex(END_PYTHON)
    assert train[10].table[1][0] in user  # the whole passage, table rows included
    assert HINT not in user and train[10].program not in user


def test_hints_give_every_problem_its_gold_program_and_a_shot_never_answers_itself(train):
    shots = [SolvedShot(example, "ans = 1") for example in train[:4]]
    user = teacher_messages(train[2], shots, ALL, hint=True)[1]["content"]
    assert user.count(HINT) == 4  # three other shots + the question
    assert user.endswith(f"A reference calculation: {train[2].program}\n{PYTHON}\n")


@pytest.mark.parametrize(("reply", "code"), [
    ("a = 5829\nb = 5735\nans = (a - b) / b\n###End Python", "a = 5829\nb = 5735\nans = (a - b) / b"),
    ("###Python\nans = 3\n###End Python\n###Passage\nmore", "ans = 3"),
    ("Here you go:\n```python\nans = 2 * 3\n```\nDone.", "ans = 2 * 3"),
    ("```\nx = 1\n```\nthen\n```py\nans = x\n```", "ans = x"),
    ("ans = 7", "ans = 7"),
    ("The answer is 7.", None),
    ("", None),
    (None, None),
    ("###End Python", None),
])
def test_code_is_extracted_from_the_reply_shapes_teachers_write(reply, code):
    assert extract_code(reply) == code
