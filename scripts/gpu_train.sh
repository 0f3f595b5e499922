#!/usr/bin/env bash
# One chunk of `idm train` on the GPU (device) machine, whose commands run at most 10 minutes.
#
# Run it there from the repository root:
#   bash scripts/gpu_train.sh CONFIG PACK RUN_NAME [MINUTES] [extra idm train options...]
#   e.g. bash scripts/gpu_train.sh configs/paper.yaml .pack paper 8 --devices 2
#
# - Wheels the machine lacks (soundfile, soxr, mido, mir_eval, decorator, cffi, pycparser; x86-64 cp312)
#   are carried in .whl and installed into /tmp/site.
# - The run folder is /root/runs/RUN_NAME, kept while the machine stays warm. On a fresh machine it is
#   restored from .carry/runs/RUN_NAME, the copy of what the previous chunk brought back.
# - Trains for MINUTES (default 8; validation and saving come after), resuming when last.ckpt exists.
# - Brings back through $OUT: last.ckpt, model.ckpt, run.json, config.yaml, logs.tar.gz (CSV logs and the
#   latest validation audio). Unpack them into .carry/runs/RUN_NAME here before the next chunk:
#     mkdir -p .carry/runs/NAME && cp FILES_AT/* .carry/runs/NAME/ && tar -xzf .carry/runs/NAME/logs.tar.gz -C .carry/runs/NAME
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,17p' "$0"
  exit 2
fi
CONFIG=$1 PACK=$2 NAME=$3
MINUTES=${4:-8}
shift $(( $# >= 4 ? 4 : 3 ))
RUN=/root/runs/$NAME
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /root/runs

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1

if [ ! -f "$RUN/last.ckpt" ] && [ -f ".carry/runs/$NAME/last.ckpt" ]; then
  echo "restoring $RUN from .carry/runs/$NAME"
  mkdir -p "$RUN" && cp -r ".carry/runs/$NAME/." "$RUN/" && rm -f "$RUN/logs.tar.gz"
fi
RESUME=()
[ -f "$RUN/last.ckpt" ] && RESUME=(--resume)

nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv,noheader || true
set +e
python3 -m idm train "$CONFIG" --data "$PACK" --out "$RUN" --max-minutes "$MINUTES" --quiet "${RESUME[@]}" "$@"
rc=$?
set -e

for f in last.ckpt model.ckpt run.json config.yaml; do
  [ -f "$RUN/$f" ] && cp "$RUN/$f" "$OUT/"
done
latest=$(ls -d "$RUN"/audio/step_* 2>/dev/null | tail -n 1 || true)
(cd "$RUN" && tar -czf "$OUT/logs.tar.gz" logs ${latest:+audio/$(basename "$latest")}) || true
exit $rc
