# Sourced by the other scripts: make .venv and install the locked dependencies into it.
# Reinstalls only when requirements.lock changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
want="$(sha256sum requirements.lock | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    if [ -f "$stamp" ]; then
        echo "requirements.lock changed: installing the locked dependencies into .venv..." >&2
    else
        echo "Installing the locked dependencies into .venv (first run, about a minute)..." >&2
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
    echo "$want" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
