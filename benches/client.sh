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
#   benches/client.sh            # 1 GiB, 3 runs; the tree
#   SIZE_MIB=256 RUNS=5 SMALL=200 BIG=2 BIG_MIB=64 benches/client.sh
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
TREE_MIB=$((SMALL * 4 / 1024 + BIG * BIG_MIB + 1))

cd "$(dirname "$0")/.."
cargo build --release --quiet --bin rsftpd --bin rsftp
target=${CARGO_TARGET_DIR:-target}
rsftpd=$(realpath "$target/release/rsftpd")
rsftp=$(realpath "$target/release/rsftp")

work=$(mktemp -d "${TMPDIR:-/tmp}/rsftp-bench.XXXXXX")
server_pid=
sshd_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; wait "$sshd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
ssh-keygen -q -t ed25519 -N '' -C bench -f key
printf '[users.bench]\nkeys = ["%s"]\nquota = "%dMiB"\n' "$(cat key.pub)" $((SIZE_MIB * 3 + TREE_MIB * 4)) > users.toml
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

# --- The tree, side by side -------------------------------------------------------------
echo "making a tree of $SMALL x 4 KiB and $BIG x $BIG_MIB MiB..."
mkdir -p tree/small
for i in $(seq "$SMALL"); do head -c 4096 /dev/urandom > "tree/small/f$i"; done
for i in $(seq "$BIG"); do head -c $((BIG_MIB * 1024 * 1024)) /dev/urandom > "tree/big$i.bin"; done
tree_sum() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 md5sum) | md5sum | cut -d' ' -f1; }
tree_want=$(tree_sum tree)

# Runs a command, prints seconds.
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@" > tree.log 2>&1 || { echo "failed: $*"; cat tree.log; exit 1; }
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}
check_tree() {
  [ "$(tree_sum "$1")" = "$tree_want" ] || { echo "$1 differs from the tree"; exit 1; }
}
results=()

t=$(seconds script -q -e -c "$client mirror -R tree /m-rsftp" /dev/null)
grep -q " 0 failed.*all verified" tree.log || { echo "rsftp mirror:"; cat tree.log; exit 1; }
check_tree storage/bench/m-rsftp
results+=("rsftp mirror -R (rsftpd)|$t")

ssh_opts="-i $work/key -o UserKnownHostsFile=$work/known_hosts -o IdentitiesOnly=yes -o BatchMode=yes"
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
