#!/usr/bin/env bash
# Background training on the GPU (device) machine, for runs longer than one 10-minute command:
# start runs detached (setsid), then collect them with calls that each wait a while and bring the files back.
#
# Run it there from the repository root:
#   bash scripts/gpu_train_bg.sh start NAME CONFIG GPUS MINUTES [extra idm train options...]
#       e.g. bash scripts/gpu_train_bg.sh start live configs/live.yaml 0,1 24
#   bash scripts/gpu_train_bg.sh collect SECONDS NAME...
#       waits SECONDS (less if every named run has ended), prints each run's state, and copies
#       NAME-{last.ckpt,model.ckpt,run.json,logs.tar.gz} to $OUT (up to two runs fit in $OUT's 8 files).
#
# - The repository (with the data pack in .pack and the carried wheels in .whl) is copied to /root/idm once,
#   so runs never read the per-call copy of the working tree.
# - A run resumes from /root/runs/NAME/last.ckpt, or on a fresh machine from resume/NAME/ (last.ckpt and
#   config.yaml of the previous chunk, brought back by collect and committed: the next session may be a fresh machine).
# - GPUS is a CUDA_VISIBLE_DEVICES list; more than one GPU trains with DDP (--devices = their number), on a
#   master port of its own per run.
# - Keep the machine warm: call collect again within 30 s of the previous call's end.
set -euo pipefail
cmd=${1:-}
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
mkdir -p "$OUT" /root/runs

status() {  # NAME: one line of state and the last lines of its log
  local name=$1 pid
  pid=$(cat "/root/runs/$name.pid" 2>/dev/null || echo 0)
  if kill -0 "$pid" 2>/dev/null; then echo "== $name: running (pid $pid)"; else echo "== $name: ended"; fi
  tail -n 4 "/root/runs/$name.log" 2>/dev/null || true
  "$PY" - "$name" <<'EOF' || true
import csv, glob, sys
name = sys.argv[1]
files = sorted(glob.glob(f"/root/runs/{name}/logs/chunk-*/metrics.csv"))
if files:
    rows = list(csv.DictReader(open(files[-1])))
    train = [r for r in rows if r.get("train/loss")]
    val = [r for r in rows if r.get("val/f_micro_tuned")]
    if train:
        print(f"   step {train[-1]['step']}: train loss {float(train[-1]['train/loss']):.3f}")
    if val:
        v = val[-1]
        per = " ".join(f"{k[6:]}={float(v[k]):.2f}" for k in v if k.startswith("val/f_") and v[k] and k != "val/f_micro_tuned")
        print(f"   val @ {v['step']}: f_micro_tuned {float(v['val/f_micro_tuned']):.3f} {per}")
EOF
}

case "$cmd" in
start)
  [ $# -ge 5 ] || { sed -n '2,20p' "$0"; exit 2; }
  NAME=$2 CONFIG=$3 GPUS=$4 MINUTES=$5
  shift 5
  if [ ! -d /root/idm ]; then
    mkdir -p /root/idm && tar --exclude=./.venv --exclude=./.git -cf - . | tar -xf - -C /root/idm
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /root/idm/.whl/*.whl
    # idm.runtime and idm.export live in runtime/ and export/ (a package-dir mapping of the editable install)
    ln -sfn /root/idm/runtime /root/idm/idm/runtime && ln -sfn /root/idm/export /root/idm/idm/export
  fi
  RUN=/root/runs/$NAME
  if [ ! -f "$RUN/last.ckpt" ] && [ -f "/root/idm/resume/$NAME/last.ckpt" ]; then
    mkdir -p "$RUN" && cp /root/idm/resume/"$NAME"/{last.ckpt,config.yaml} "$RUN/"
  fi
  RESUME=()
  [ -f "$RUN/last.ckpt" ] && RESUME=(--resume)
  n=$(tr ',' '\n' <<<"$GPUS" | wc -l)
  port=$(( 29500 + $(tr -cd '0-9' <<<"$GPUS" | cut -c1) * 10 ))
  cd /root/idm
  CUDA_VISIBLE_DEVICES=$GPUS MASTER_PORT=$port PYTHONPATH=/tmp/site:/root/idm PYTHONUNBUFFERED=1 \
    setsid nohup "$PY" -m idm train "$CONFIG" --data /root/idm/.pack --out "$RUN" --devices "$n" \
    --max-minutes "$MINUTES" --quiet "${RESUME[@]}" "$@" >"/root/runs/$NAME.log" 2>&1 </dev/null &
  echo $! >"/root/runs/$NAME.pid"
  echo "started $NAME on GPUs $GPUS (pid $!, port $port) ${RESUME[*]}"
  ;;
collect)
  [ $# -ge 3 ] || { sed -n '2,20p' "$0"; exit 2; }
  SECONDS_MAX=$2
  shift 2
  t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt "$SECONDS_MAX" ]; do
    alive=0
    for name in "$@"; do kill -0 "$(cat "/root/runs/$name.pid" 2>/dev/null || echo 0)" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || break
    sleep 5
  done
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader || true
  for name in "$@"; do
    status "$name"
    for f in last.ckpt model.ckpt run.json; do
      [ -f "/root/runs/$name/$f" ] && cp "/root/runs/$name/$f" "$OUT/$name-$f"
    done
    (cd "/root/runs/$name" && tar -czf "$OUT/$name-logs.tar.gz" logs config.yaml) 2>/dev/null || true
  done
  ;;
*)
  sed -n '2,20p' "$0"
  exit 2
  ;;
esac
