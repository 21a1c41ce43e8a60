"""The synthetic FinQA-format sample that lets everything run offline."""
