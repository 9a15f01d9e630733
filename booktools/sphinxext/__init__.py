"""The book's Sphinx extensions, listed under ``sphinx: extra_extensions`` in `_config.yml`:
`vendor_assets` (every page loads its scripts from the site itself) and `runtimes` (the run
time note under each chapter's title)."""
