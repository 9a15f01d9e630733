"""Shared by every test folder: tests/unit (the lmlib package), tests/book (the book and the
site), tests/assignments (assignments and grading) and tests/colab (the Colab setup cell)."""
