"""Teacher code distillation: FinQA to CSV, teachers that write Python for each question, filtering."""
