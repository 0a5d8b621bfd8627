#!/usr/bin/env bash
# The rsftp client's own throughput: `rsftp put` and `rsftp get` of one file (1 GiB by
# default), verified, with the progress bar drawn (under `script`, so stderr is a
# terminal), against a release rsftpd on 127.0.0.1. Prints the median of RUNS runs.
#
#   benches/client.sh            # 1 GiB, 3 runs
#   SIZE_MIB=256 RUNS=5 benches/client.sh
#
# Needs: cargo, ssh-keygen, script (util-linux), md5sum. Uses a temporary directory
# (the file, the server's storage: about 3 x SIZE) and removes it afterwards.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin rsftpd --bin rsftp
target=${CARGO_TARGET_DIR:-target}
rsftpd=$(realpath "$target/release/rsftpd")
rsftp=$(realpath "$target/release/rsftp")

work=$(mktemp -d "${TMPDIR:-/tmp}/rsftp-bench.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
ssh-keygen -q -t ed25519 -N '' -C bench -f key
printf '[users.bench]\nkeys = ["%s"]\nquota = "%dMiB"\n' "$(cat key.pub)" $((SIZE_MIB * 3)) > users.toml
chmod 600 users.toml  # rsftpd refuses a users file that others can read

# A free port: try a few random ones until the server says it listens.
port=
for _ in 1 2 3 4 5; do
  try=$((20000 + RANDOM % 30000))
  "$rsftpd" --listen "127.0.0.1:$try" --users users.toml --storage storage --keys keys --logs logs \
    > server.out 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    grep -q "listening" server.out 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if grep -q "listening" server.out 2>/dev/null; then port=$try; break; fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=
done
[ -n "$port" ] || { echo "rsftpd did not start:"; cat server.out; exit 1; }
echo "[127.0.0.1]:$port $(cat keys/ssh_host_ed25519_key.pub)" > known_hosts

echo "making a ${SIZE_MIB} MiB file of random bytes..."
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > file.bin
want=$(md5sum file.bin | cut -d' ' -f1)
bytes=$((SIZE_MIB * 1024 * 1024))

client="$rsftp bench@127.0.0.1:$port -i $work/key --known-hosts $work/known_hosts"

# Runs one transfer under a pseudo-terminal, checks it was verified, prints seconds.
timed() {
  local start end
  start=$(date +%s.%N)
  script -q -e -c "$client $*" /dev/null > run.log 2>&1 || { cat run.log; exit 1; }
  end=$(date +%s.%N)
  grep -q "verified md5 $want" run.log || { echo "not verified:"; cat run.log; exit 1; }
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

put_times=()
get_times=()
for run in $(seq "$RUNS"); do
  rm -f storage/bench/file.bin
  put_times+=("$(timed put file.bin /file.bin)")
  rm -f copy.bin
  get_times+=("$(timed get /file.bin copy.bin)")
  [ "$(md5sum copy.bin | cut -d' ' -f1)" = "$want" ] || { echo "copy differs"; exit 1; }
  echo "run $run: put ${put_times[-1]} s, get ${get_times[-1]} s"
done

report() {
  local name=$1; shift
  local secs
  secs=$(printf '%s\n' "$@" | median)
  awk -v n="$name" -v b="$bytes" -v s="$secs" -v r="$RUNS" -v m="$SIZE_MIB" 'BEGIN {
    printf "rsftp %s, %d MiB, median of %d: %.2f s, %.0f MB/s (%.0f MiB/s)\n",
      n, m, r, s, b / s / 1e6, b / s / 1048576 }'
}
report put "${put_times[@]}"
report get "${get_times[@]}"
