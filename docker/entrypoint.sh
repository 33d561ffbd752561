#!/bin/sh
# Entrypoint of the kmseg image. The first argument picks the role:
#
#   scheduler [dask-scheduler options...]        dask scheduler on $KMSEG_BIND_HOST:$KMSEG_SCHEDULER_PORT
#   worker [ADDRESS] [dask-worker options...]    dask worker; ADDRESS defaults to the scheduler above
#   kmseg ARGS... | segment|fit|run|info|report|demo|compile ARGS   the kmseg CLI
#   dask ARGS...                                 the dask CLI as is
#   anything else                                executed as given (python, sh, ...)
#
# Environment (defaults keep all traffic on the loopback interface):
#   KMSEG_BIND_HOST       interface the scheduler, workers and nannies listen on   (127.0.0.1)
#   KMSEG_SCHEDULER_HOST  scheduler host the workers connect to        ($KMSEG_BIND_HOST)
#   KMSEG_SCHEDULER_PORT  scheduler port                                (8786)
#   KMSEG_DASHBOARD_PORT  scheduler dashboard port, 0 = random          (8787)
#   KMSEG_WORKER_NTHREADS threads per worker                            (1)
#   KMSEG_WORKER_MEMORY   memory limit per worker                       (auto)
set -eu

bind_host="${KMSEG_BIND_HOST:-127.0.0.1}"
sched_host="${KMSEG_SCHEDULER_HOST:-$bind_host}"
sched_port="${KMSEG_SCHEDULER_PORT:-8786}"
dash_port="${KMSEG_DASHBOARD_PORT:-8787}"

if [ "$#" -eq 0 ]; then
    set -- kmseg --help
fi

role="$1"
case "$role" in
    scheduler)
        shift
        exec dask scheduler \
            --host "$bind_host" \
            --port "$sched_port" \
            --dashboard-address "$bind_host:$dash_port" \
            "$@"
        ;;
    worker)
        shift
        address="tcp://$sched_host:$sched_port"
        case "${1:-}" in
            tcp://* | tls://* | ucx://* | inproc://*)
                address="$1"
                shift
                ;;
        esac
        exec dask worker "$address" \
            --host "$bind_host" \
            --dashboard-address "$bind_host:0" \
            --nthreads "${KMSEG_WORKER_NTHREADS:-1}" \
            --memory-limit "${KMSEG_WORKER_MEMORY:-auto}" \
            --local-directory "${TMPDIR:-/tmp}" \
            "$@"
        ;;
    kmseg)
        shift
        exec kmseg "$@"
        ;;
    segment | fit | run | info | report | demo | compile)
        exec kmseg "$@"
        ;;
    -*)
        exec kmseg "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
