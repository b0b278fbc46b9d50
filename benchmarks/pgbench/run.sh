#!/usr/bin/env bash
# The server's side of a cycle, without Python: the floor, the same two transactions as plain
# SQL, and the lock's functions, each for 10 s on one connection. Usage: run.sh DATABASE_URL
# (a database `dlock migrate` has set up; pgbench from pgserver's wheel or the system).
set -euo pipefail
url=${1:?usage: run.sh postgresql://user@host:5432/dbname}
here=$(dirname "$0")
pgbench=$(command -v pgbench || python -c 'import pgserver, pathlib; print(pathlib.Path(pgserver.__file__).parent / "pginstall/bin/pgbench")')
psql_bin=$(dirname "$pgbench")/psql
"$psql_bin" -q "$url" -f "$here/setup.sql"
for script in floor plain_two_row_transactions dlock_cycle; do
    printf '%-28s ' "$script"
    "$pgbench" -n -M simple -c 1 -T 10 -f "$here/$script.sql" "$url" | grep 'latency average'
done
