"""Test and measurement tooling shared by tests/ and scripts/ (fuzzing, harnesses)."""
