"""The test suite. A package only so that tests/conftest.py gets a module name of its own:
with `--doctest-modules`, pytest imports each conftest.py outside a package as the module
`conftest`, and found tests/book/conftest.py already imported under that name."""
