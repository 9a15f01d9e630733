"""How long loading SmolLM2-135M-Instruct takes: first time, from the cache, in-process.

Each measurement runs in a fresh Python process. Both de-quantize the GGUF file
(`lmlib.gguf`); "first" also converts the tokenizer from the file's metadata, "cached"
loads the tokenizer the first load saved, and "in_process" is a second call in the same
process. Prints one JSON
line; `--keep-cache` reuses the normal cache instead of a fresh temporary one.

    python benchmarks/load_smollm2.py
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = """
import json, time
t0 = time.perf_counter()
import transformers  # noqa: F401  (imports are part of what a reader waits for)
t1 = time.perf_counter()
from lmlib.pretrained import load_smollm2
model, tok = load_smollm2()
t2 = time.perf_counter()
load_smollm2()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "again_s": t3 - t2}))
"""


def run(env):
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, check=True,
                         capture_output=True, text=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-cache", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.keep_cache:
            env["LMLIB_CACHE_DIR"] = tmp
        first, cached = run(env), run(env)
    result = {
        "first_load_seconds": round(first["import_s"] + first["load_s"], 2),
        "first_load_seconds_without_imports": round(first["load_s"], 2),
        "cached_load_seconds": round(cached["import_s"] + cached["load_s"], 2),
        "cached_load_seconds_without_imports": round(cached["load_s"], 2),
        "transformers_import_seconds": round(cached["import_s"], 2),
        "in_process_repeat_seconds": round(cached["again_s"], 6),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
