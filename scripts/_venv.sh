# Sourced by the scripts: create or reuse .venv and install the project into it.
# Usage: ensure_venv [extra]   e.g. ensure_venv dev
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"

ensure_venv() {
  local extra="${1:-}"
  local spec="$root"
  [ -n "$extra" ] && spec="$root[$extra]"
  if [ ! -x "$venv/bin/python" ]; then
    local python="${PYTHON:-}"
    if [ -z "$python" ]; then
      for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
          && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
          python="$candidate"
          break
        fi
      done
    fi
    [ -n "$python" ] || { echo "issueflow needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }
    echo "creating .venv with $python"
    "$python" -m venv "$venv"
  fi
  # Reinstall only when pyproject.toml changed since the last install for this extra.
  local stamp="$venv/.installed-${extra:-base}"
  if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
    echo "installing issueflow${extra:+[$extra]} into .venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --progress-bar on -e "$spec"
    touch "$stamp"
  fi
  export PATH="$venv/bin:$PATH"
}
