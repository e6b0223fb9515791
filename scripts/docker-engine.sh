#!/usr/bin/env bash
# Start or stop a local Docker engine for the image builds and the image smoke run.
#
#   scripts/docker-engine.sh start   install docker.io if missing, start dockerd unless one answers;
#                                    prints "started" or "running" (someone else's engine: left alone)
#   scripts/docker-engine.sh stop    stop dockerd only if `start` started it (by its recorded PID)
#   scripts/docker-engine.sh status  exit 0 if an engine answers
#
# The engine runs without a bridge network and without touching iptables: every build and container
# here uses `--network host`, so no private-range address is ever created or targeted.
set -euo pipefail

STATE_DIR="${MODELBERTH_STATE_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.modelberth}/docker"
PID_FILE="$STATE_DIR/dockerd.pid"
LOG_FILE="$STATE_DIR/dockerd.log"
DOCKER="${DOCKER:-$(command -v /usr/bin/docker || command -v docker || echo docker)}"

answers() { "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

install_engine() {
  if command -v dockerd >/dev/null 2>&1 && [ -x /usr/bin/docker ]; then return 0; fi
  echo "docker-engine: installing docker.io from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends docker.io >/dev/null
  DOCKER=/usr/bin/docker
}

start() {
  if answers; then echo running; return 0; fi
  install_engine
  mkdir -p "$STATE_DIR"
  # A stale socket from an engine that died would make dockerd refuse to start.
  if [ -S /var/run/docker.sock ] && ! answers; then rm -f /var/run/docker.sock; fi
  dockerd --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --pidfile "$STATE_DIR/dockerd.own.pid" >"$LOG_FILE" 2>&1 &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 120); do
    if answers; then echo started; return 0; fi
    if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      echo "docker-engine: dockerd exited; last log lines:" >&2; tail -20 "$LOG_FILE" >&2; rm -f "$PID_FILE"; return 1
    fi
    sleep 0.5
  done
  echo "docker-engine: dockerd did not answer within 60 s (log: $LOG_FILE)" >&2
  return 1
}

stop() {
  [ -f "$PID_FILE" ] || { echo "not started by us"; return 0; }
  local pid; pid="$(cat "$PID_FILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  fi
  rm -f "$PID_FILE"
  echo stopped
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
