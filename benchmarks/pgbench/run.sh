#!/usr/bin/env bash
# The server's side of a cycle, without Python: the floor, the same two transactions as plain
# SQL, and the lock's functions (version 3, then version 2), each for 10 s on one connection,
# with the serving backend's CPU per transaction beside the latency when the server runs on this
# host. Usage: run.sh DATABASE_URL (a database `dlock migrate` has set up; pgbench from
# pgserver's wheel or the system).
set -euo pipefail
url=${1:?usage: run.sh postgresql://user@host:5432/dbname}
seconds=${SECONDS_EACH:-10}
here=$(dirname "$0")
pgbench=$(command -v pgbench || python -c 'import pgserver, pathlib; print(pathlib.Path(pgserver.__file__).parent / "pginstall/bin/pgbench")')
psql_bin=$(dirname "$pgbench")/psql
"$psql_bin" -q "$url" -f "$here/setup.sql"
for script in floor plain_two_row_transactions dlock_cycle dlock_cycle_v2; do
    printf '%-28s ' "$script"
    "$pgbench" -n -M simple -c 1 -T "$seconds" -f "$here/$script.sql" "$url" > "/tmp/pgbench.$$" &
    sleep 1
    pid=$("$psql_bin" -Atq "$url" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench' LIMIT 1" || true)
    before=$(awk '{print $1}' "/proc/$pid/schedstat" 2>/dev/null || echo)
    count_before=$("$psql_bin" -Atq "$url" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    sleep $((seconds - 2))
    after=$(awk '{print $1}' "/proc/$pid/schedstat" 2>/dev/null || echo)
    count_after=$("$psql_bin" -Atq "$url" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    wait
    latency=$(grep 'latency average' "/tmp/pgbench.$$")
    if [ -n "$before" ] && [ -n "$after" ]; then
        # pg_stat_database's commits include the two psql calls of each reading.
        cycles=$(( (count_after - count_before - 2) / 2 ))
        awk -v b="$before" -v a="$after" -v n="$cycles" -v l="$latency" \
            'BEGIN { printf "%s, server CPU %.3f ms per cycle\n", l, (a - b) / 1e6 / n }'
    else
        echo "$latency"
    fi
    rm -f "/tmp/pgbench.$$"
done
