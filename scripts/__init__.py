"""Command-line scripts: thin layers over the finqa_dsl package, importable as modules by the tests."""
