# shellcheck shell=bash
# Sourced by the benchmark scripts: a `gloam up` stack started in the background.
#
#   start_stack GLOAM CONFIG DIR   starts `GLOAM up CONFIG` (output in DIR/up.out, DIR/up.err),
#                                  waits for its ready line, sets ENGINE_PID and URL; exits the
#                                  script if the stack dies or is not ready within 60 s
#   stop_stack                     SIGTERM (drain, stop workers, clean up) and wait
#   start_echo RELEASE_DIR DIR     starts the bare hyper echo baseline (bench/baselines),
#                                  sets ECHO_PID and ECHO (its URL); exits if it does not start

ENGINE_PID=""
URL=""
# Set by start_echo, for the scripts that source this file.
# shellcheck disable=SC2034
ECHO_PID=""
ECHO=""

start_stack() {
  local gloam="$1" config="$2" dir="$3"
  GLOAM_LOG=warn "$gloam" up "$config" > "$dir/up.out" 2> "$dir/up.err" &
  ENGINE_PID=$!
  URL=""
  for _ in $(seq 600); do
    URL="$(sed -n 's/^gloam: ready \(http:[^ ]*\).*/\1/p' "$dir/up.out")"
    [[ -n "$URL" ]] && return 0
    kill -0 "$ENGINE_PID" 2>/dev/null || { cat "$dir/up.err" >&2; echo "gloam up died" >&2; exit 1; }
    sleep 0.1
  done
  echo "gloam up: no ready line in 60 s" >&2
  exit 1
}

stop_stack() {
  if [[ -n "$ENGINE_PID" ]]; then
    kill -TERM "$ENGINE_PID" 2>/dev/null || true
    wait "$ENGINE_PID" 2>/dev/null || true
    ENGINE_PID=""
  fi
}

start_echo() {
  local dir="$1" out="$2/echo.out"
  "$dir/echo-http" > "$out" &
  # shellcheck disable=SC2034
  ECHO_PID=$!
  for _ in $(seq 100); do
    ECHO="$(sed -n 's/^listening \(http:[^ ]*\).*/\1/p' "$out")"
    [[ -n "$ECHO" ]] && return 0
    sleep 0.1
  done
  echo "echo-http did not start" >&2
  exit 1
}
