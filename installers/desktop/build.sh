#!/usr/bin/env bash
# Build the one-folder desktop bundle with PyInstaller (Linux and macOS; Windows: build.ps1).
#
#   installers/desktop/build.sh [BUILD_ROOT]
#
# BUILD_ROOT (default: build/installer under the repository) receives work/ (PyInstaller's
# scratch) and dist/retail-desktop/ (the app: run dist/retail-desktop/retail-desktop). Both are
# build output: never commit them. PYTHON picks the interpreter (default: .venv/bin/python,
# else python3); it needs the project and the `installer` extra installed:
#   pip install -e '.[installer]'
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
build_root="${1:-$repo/build/installer}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "PyInstaller is not installed for $PYTHON: run  $PYTHON -m pip install -e '$repo[installer]'" >&2
    exit 2
fi

mkdir -p "$build_root"
start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean \
    --workpath "$build_root/work" \
    --distpath "$build_root/dist" \
    "$here/retail-desktop.spec"
app="$build_root/dist/retail-desktop"
echo "built $app in $(( $(date +%s) - start )) s, $(du -sh "$app" | cut -f1)"
