#!/usr/bin/env bash
# The Python package as a user gets it: `pip install ./python` into a fresh virtual environment
# (it builds the library from this repository), then, from another directory and with no
# environment variable set, `import starttls` must load the packaged library, and the wrapper's
# test suite runs against the installed package. `pip wheel` must give a wheel holding the
# library. Used by .ci/run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/starttls-py.XXXXXX)
trap 'rm -rf "$W"' EXIT
unset STARTTLS_LIBRARY PYTHONPATH

python3 -m venv "$W/venv"
PY=$W/venv/bin/python
"$PY" -m pip install -q "$ROOT/python"

cd "$W"
"$PY" - "$W/venv" <<'PYEOF'
import os, sys
import starttls
venv = sys.argv[1]
assert starttls.__file__.startswith(venv), starttls.__file__
assert starttls.library_path.startswith(os.path.dirname(starttls.__file__)), starttls.library_path
print("installed:", starttls.version(), "from", starttls.library_path)
PYEOF
"$PY" -m unittest discover -s "$ROOT/python/tests" -t "$ROOT/python/tests" > "$W/tests.log" 2>&1 \
    || { cat "$W/tests.log"; exit 1; }
tail -n 3 "$W/tests.log"
grep -Eq '^Ran [1-9][0-9]* tests?' "$W/tests.log" || { echo "no Python tests ran" >&2; exit 1; }

# The type hints: mypy --strict on the package (py.typed ships with it).
"$PY" -m pip install -q mypy
(cd "$ROOT/python" && "$PY" -m mypy --strict --cache-dir "$W/mypy-cache" starttls)

"$PY" -m pip wheel -q --no-deps "$ROOT/python" -w "$W/wheel"
"$PY" - "$W/wheel" <<'PYEOF'
import glob, sys, zipfile
wheels = glob.glob(sys.argv[1] + "/starttls-*.whl")
assert len(wheels) == 1, wheels
names = zipfile.ZipFile(wheels[0]).namelist()
assert any(n.startswith("starttls/_libstarttls") and n.endswith(".so") for n in names), names
assert "starttls/py.typed" in names, names
print("wheel:", wheels[0].rsplit("/", 1)[1], "holds the library")
PYEOF
