#!/usr/bin/env bash
# Fill docker/wheelhouse/ with wheels for every runtime dependency of kmseg (the pins of
# pyproject.toml) plus its build backend, so that `docker build` installs with --no-index
# and needs no network inside the build (robust behind proxies / TLS interception).
#
#   docker/wheelhouse.sh            # uses python3 (must be CPython 3.11, like the image)
#   PYTHON=/path/to/python3.11 docker/wheelhouse.sh
#
# pip on the host is used as configured (its index, mirrors, certificates and cache).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
wheelhouse="${KMSEG_WHEELHOUSE:-$here/wheelhouse}"
python="${PYTHON:-python3}"

log() { printf '[wheelhouse %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

ver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$ver" != 3.11 ]]; then
    log "ERROR: $python is Python $ver; the image runs 3.11, set PYTHON to a python3.11"
    exit 1
fi

reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
# runtime dependencies + build-system requirements, straight from pyproject.toml
"$python" - "$repo/pyproject.toml" >"$reqs" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
reqs = list(data["project"].get("dependencies", []))
reqs += data.get("build-system", {}).get("requires", ["setuptools", "wheel"])
print("\n".join(reqs))
EOF

mkdir -p "$wheelhouse"
find "$wheelhouse" -maxdepth 1 -type f -name '*.whl' -delete
t0=$SECONDS
log "pip wheel -> $wheelhouse ($(wc -l <"$reqs") requirements)"
"$python" -m pip wheel --quiet --disable-pip-version-check \
    --wheel-dir "$wheelhouse" -r "$reqs" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
log "$(find "$wheelhouse" -maxdepth 1 -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1), in $((SECONDS - t0))s"
