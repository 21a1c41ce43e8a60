"""The driver's arguments and the run it wires from the other subpackages (scripts/finetune.py calls it)."""
