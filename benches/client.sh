#!/usr/bin/env bash
# The rsftp client's own throughput: `rsftp put` and `rsftp get` of one file (1 GiB by
# default), verified, with the progress bar drawn (under `script`, so stderr is a
# terminal), against a release rsftpd on 127.0.0.1. Prints the median of RUNS runs.
#
# Then a tree (SMALL files of 4 KiB and BIG files of BIG_MIB MiB; 1,000 and 4 x 256 MiB
# by default), uploaded side by side, once each, to the same rsftpd:
#   rsftp mirror -R (4 at once), lftp mirror -R --parallel=4, sftp -b "put -r";
# and with rsftp mirror -R to a private OpenSSH sshd, through the SFTP fallback.
#
# Then many small files (MANY of 4 KiB, 1,000 by default): rsftp put -r against
# sftp -b "put -r" to the same rsftpd, the median of RUNS runs each, and their ratio.
# COMPARE_RSFTP=/path/to/another/rsftp times that client too (an older build, say).
# DELAY_MS=5 sends both through a relay on 127.0.0.1 that holds every byte back that
# long each way (python3), so that round trips cost what they do over a network.
#
#   benches/client.sh            # 1 GiB, 3 runs; the tree; the small files
#   SIZE_MIB=256 RUNS=5 SMALL=200 BIG=2 BIG_MIB=64 benches/client.sh
#   CASES=many RUNS=5 benches/client.sh     # only the small files (also: file, tree)
#
# Needs: cargo, ssh-keygen, script (util-linux), md5sum; for the tree also lftp, sftp and
# /usr/sbin/sshd (each case is skipped, and says so, if its program is missing). Uses a
# temporary directory (the file, the tree, the servers' storage) and removes it.
set -euo pipefail

SIZE_MIB=${SIZE_MIB:-1024}
RUNS=${RUNS:-3}
SMALL=${SMALL:-1000}
BIG=${BIG:-4}
BIG_MIB=${BIG_MIB:-256}
MANY=${MANY:-1000}
CASES=${CASES:-file,tree,many}
DELAY_MS=${DELAY_MS:-0}
TREE_MIB=$((SMALL * 4 / 1024 + BIG * BIG_MIB + 1))
MANY_MIB=$((MANY * 4 / 1024 + 1))
case_on() { [[ ",$CASES," == *",$1,"* ]]; }

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin rsftpd --bin rsftp
target=${CARGO_TARGET_DIR:-target}
rsftpd=$(realpath "$target/release/rsftpd")
rsftp=$(realpath "$target/release/rsftp")

work=$(mktemp -d "${TMPDIR:-/tmp}/rsftp-bench.XXXXXX")
server_pid=
sshd_pid=
relay_pid=
cleanup() {
  if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; wait "$relay_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; wait "$sshd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
ssh-keygen -q -t ed25519 -N '' -C bench -f key
printf '[users.bench]\nkeys = ["%s"]\nquota = "%dMiB"\n' "$(cat key.pub)" $((SIZE_MIB * 3 + TREE_MIB * 4 + MANY_MIB * 8 * (RUNS + 1))) > users.toml
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

client="$rsftp bench@127.0.0.1:$port -i $work/key --known-hosts $work/known_hosts"
ssh_opts="-i $work/key -o UserKnownHostsFile=$work/known_hosts -o IdentitiesOnly=yes -o BatchMode=yes"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
tree_sum() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum) | md5sum | cut -d' ' -f1; }

# Runs a command, prints seconds.
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > tree.log 2>&1 || { echo "failed: $*"; cat tree.log; exit 1; }
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

if case_on file; then
echo "making a ${SIZE_MIB} MiB file of random bytes..."
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > file.bin
want=$(md5sum file.bin | cut -d' ' -f1)
bytes=$((SIZE_MIB * 1024 * 1024))

# Runs one transfer under a pseudo-terminal, checks it was verified, prints seconds.
timed() {
  local start end
  start=$(date +%s.%N)
  script -q -e -c "$client $*" /dev/null > run.log 2>&1 || { cat run.log; exit 1; }
  end=$(date +%s.%N)
  grep -q "verified md5 $want" run.log || { echo "not verified:"; cat run.log; exit 1; }
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

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
fi

# --- The tree, side by side -------------------------------------------------------------
if case_on tree; then
echo "making a tree of $SMALL x 4 KiB and $BIG x $BIG_MIB MiB..."
mkdir -p tree/small
for i in $(seq "$SMALL"); do head -c 4096 /dev/urandom > "tree/small/f$i"; done
for i in $(seq "$BIG"); do head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom > "tree/big$i.bin"; done
tree_want=$(tree_sum tree)
check_tree() {
  [ "$(tree_sum "$1")" = "$tree_want" ] || { echo "$1 differs from the tree"; exit 1; }
}
results=()

t=$(seconds script -q -e -c "$client mirror -R tree /m-rsftp" /dev/null)
grep -q " 0 failed.*all verified" tree.log || { echo "rsftp mirror:"; cat tree.log; exit 1; }
check_tree storage/bench/m-rsftp
results+=("rsftp mirror -R (rsftpd)|$t")

if command -v lftp > /dev/null; then
  t=$(seconds lftp -e "set sftp:connect-program 'ssh -a -x $ssh_opts'; mirror -R --parallel=4 tree /m-lftp; quit" \
        "sftp://bench:@127.0.0.1:$port")
  check_tree storage/bench/m-lftp
  results+=("lftp mirror -R --parallel=4 (rsftpd)|$t")
else
  echo "lftp is not installed: its case is skipped"
fi
if command -v sftp > /dev/null; then
  printf 'put -r tree /m-sftp\n' > sftp.batch
  t=$(seconds sftp -q -P "$port" $ssh_opts -b sftp.batch bench@127.0.0.1)
  check_tree storage/bench/m-sftp
  results+=("sftp -b put -r (rsftpd)|$t")
else
  echo "sftp is not installed: its case is skipped"
fi

# A private OpenSSH sshd whose SFTP sessions start in sshd-root/.
if [ -x /usr/sbin/sshd ]; then
  mkdir -p sshd-root /run/sshd
  ssh-keygen -q -t ed25519 -N '' -f sshd_host_key
  cp key.pub authorized_keys
  sshd_port=$((20000 + RANDOM % 30000))
  cat > sshd_config <<CONF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $work/sshd_host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
Subsystem sftp internal-sftp -d $work/sshd-root
CONF
  /usr/sbin/sshd -D -e -f sshd_config 2> sshd.log &
  sshd_pid=$!
  for _ in $(seq 50); do (exec 3<> "/dev/tcp/127.0.0.1/$sshd_port") 2> /dev/null && break; sleep 0.1; done
  me=$(id -un)
  fallback="$rsftp $me@127.0.0.1:$sshd_port -i $work/key --known-hosts $work/sshd_known_hosts --accept-new-host-key"
  t=$(seconds script -q -e -c "$fallback mirror -R tree m" /dev/null)
  grep -q " 0 failed.*all verified" tree.log || { echo "rsftp mirror to sshd:"; cat tree.log; exit 1; }
  check_tree sshd-root/m
  results+=("rsftp mirror -R (OpenSSH sshd, SFTP fallback)|$t")
else
  echo "/usr/sbin/sshd is not installed: the fallback case is skipped"
fi

base=${results[0]#*|}
echo "tree of $SMALL x 4 KiB + $BIG x $BIG_MIB MiB ($TREE_MIB MiB), uploaded once each:"
for r in "${results[@]}"; do
  awk -v n="${r%|*}" -v s="${r#*|}" -v b="$base" 'BEGIN {
    printf "  %-48s %8.2f s  %5.2f x rsftp mirror\n", n, s, s / b }'
done
fi

# --- Many small files: rsftp put -r against sftp -b, median of RUNS each -----------------
if case_on many; then
echo "making $MANY files of 4 KiB..."
mkdir -p many
for i in $(seq "$MANY"); do head -c 4096 /dev/urandom > "many/f$i"; done
many_want=$(tree_sum many)
check_many() {
  [ "$(tree_sum "$1")" = "$many_want" ] || { echo "$1 differs from the small files"; exit 1; }
}
many_port=$port
if [ "$DELAY_MS" != 0 ]; then
  # A relay that delays each direction by DELAY_MS, in order, without a cap on rate.
  cat > relay.py <<'PY'
import asyncio, sys, time
listen, target, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000

async def pipe(reader, writer):
    queue = asyncio.Queue()
    async def pump():
        while True:
            data = await reader.read(65536)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return
    task = asyncio.ensure_future(pump())
    try:
        while True:
            due, data = await queue.get()
            if due > time.monotonic():
                await asyncio.sleep(due - time.monotonic())
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        task.cancel()
        writer.close()

async def serve(reader, writer):
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
  for _ in 1 2 3 4 5; do
    try=$((20000 + RANDOM % 30000))
    python3 relay.py "$try" "$port" "$DELAY_MS" > relay.out 2>&1 &
    relay_pid=$!
    for _ in $(seq 50); do grep -q listening relay.out 2>/dev/null && break; sleep 0.1; done
    if grep -q listening relay.out; then many_port=$try; break; fi
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=
  done
  [ "$many_port" != "$port" ] || { echo "the relay did not start:"; cat relay.out; exit 1; }
  echo "[127.0.0.1]:$many_port $(cat keys/ssh_host_ed25519_key.pub)" >> known_hosts
  echo "through a relay that delays each way by $DELAY_MS ms"
fi
client="$rsftp bench@127.0.0.1:$many_port -i $work/key --known-hosts $work/known_hosts"
printf 'put -r many /p-sftp\n' > many.batch
if command -v sftp > /dev/null; then have_sftp=1; else have_sftp=; echo "sftp is not installed: its case is skipped"; fi
rsftp_times=()
sftp_times=()
other_times=()
for run in $(seq "$RUNS"); do
  rm -rf storage/bench/p-rsftp storage/bench/p-sftp storage/bench/p-other
  t=$(seconds script -q -e -c "$client put -r many /p-rsftp" /dev/null)
  grep -q "put: $MANY files, .*all verified" tree.log || { echo "rsftp put -r:"; cat tree.log; exit 1; }
  [ "$(grep -c "verified md5 " tree.log)" -ge "$MANY" ] || { echo "a file was not verified:"; cat tree.log; exit 1; }
  check_many storage/bench/p-rsftp
  rsftp_times+=("$t")
  line="run $run: rsftp put -r $t s"
  if [ -n "$have_sftp" ]; then
    t=$(seconds sftp -q -P "$many_port" $ssh_opts -b many.batch bench@127.0.0.1)
    check_many storage/bench/p-sftp
    sftp_times+=("$t")
    line="$line, sftp -b $t s"
  fi
  if [ -n "${COMPARE_RSFTP:-}" ]; then
    other="$COMPARE_RSFTP bench@127.0.0.1:$many_port -i $work/key --known-hosts $work/known_hosts"
    t=$(seconds script -q -e -c "$other put -r many /p-other" /dev/null)
    check_many storage/bench/p-other
    other_times+=("$t")
    line="$line, $COMPARE_RSFTP $t s"
  fi
  echo "$line"
done
mine=$(printf '%s\n' "${rsftp_times[@]}" | median)
echo "$MANY x 4 KiB, put -r, median of $RUNS (relay delay each way: $DELAY_MS ms):"
awk -v s="$mine" -v n="$MANY" 'BEGIN { printf "  %-40s %8.2f s  %6.0f files/s\n", "rsftp put -r (rsftpd)", s, n / s }'
if [ -n "$have_sftp" ]; then
  theirs=$(printf '%s\n' "${sftp_times[@]}" | median)
  awk -v s="$theirs" -v n="$MANY" -v m="$mine" 'BEGIN {
    printf "  %-40s %8.2f s  %6.0f files/s  (rsftp takes %.2f x its time)\n", "sftp -b put -r (rsftpd)", s, n / s, m / s }'
fi
if [ -n "${COMPARE_RSFTP:-}" ]; then
  old=$(printf '%s\n' "${other_times[@]}" | median)
  awk -v s="$old" -v n="$MANY" -v m="$mine" -v c="$COMPARE_RSFTP" 'BEGIN {
    printf "  %-40s %8.2f s  %6.0f files/s  (rsftp takes %.2f x its time)\n", c " put -r", s, n / s, m / s }'
fi
fi
