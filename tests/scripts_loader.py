"""Load a file of scripts/ as a module (scripts/ is no package), once per test session.

The module is registered in sys.modules (dataclasses look their module up there) under
`book_<stem>`, the name the root conftest.py also uses for scripts/runtimes.py, so every
test file shares one copy.
"""

import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(stem: str):
    name = f"book_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
