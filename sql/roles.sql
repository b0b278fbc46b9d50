-- The lock's two roles and their exact grants, for a database migrated by its owner (the role
-- that runs `dlock migrate`; it owns the tables and the protocol's functions). Run it as that
-- owner, once per database and again after a release adds functions:
--
--   psql "postgresql://owner@host/db" -f sql/roles.sql
--   GRANT dlock_user TO app_login;          -- code servers and run workers
--   GRANT dlock_operator TO oncall_login;   -- people running `dlock status`
--
-- dlock_user can use the lock only through its functions (SECURITY DEFINER, bounds checked):
-- no INSERT, UPDATE or DELETE on queue_locks or job_logs, and no read of queue_locks.owner,
-- the holder's secret that renewing or releasing a lock needs. It can still claim any lock or
-- slot by name, as any caller of the API can: that is the trust boundary.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dlock_user') THEN
        CREATE ROLE dlock_user NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dlock_operator') THEN
        CREATE ROLE dlock_operator NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO dlock_user, dlock_operator', current_schema());
END
$$;

GRANT EXECUTE ON FUNCTION
    dlock_acquire_v2(text, text, text, text, text, text, double precision, boolean),
    dlock_release_v2(text, text, text, bigint, bigint, text, text),
    dlock_acquire_v3(text, text, text, text, text, text, double precision, boolean),
    dlock_release_v3(text, text, text, bigint, bigint, text, text),
    dlock_release_v4(text, text, text, bigint, bigint, text, text),
    dlock_abandon_v2(text, text, text, text, text, text, text),
    dlock_abandon_v3(text, text, text, text, text, text, text),
    dlock_renew_all_v1(text[], text[], text[], bigint[], double precision[]),
    dlock_still_held_v1(text, text, text, bigint),
    dlock_fence_is_current_v1(text, text, bigint),
    -- A run re-running a completed slot on purpose (the guard's dlock/rerun tag).
    dlock_acquire_rerun_v1(text, text, text, text, text, text, double precision, boolean, text),
    dlock_acquire_rerun_v2(text, text, text, text, text, text, double precision, boolean, text)
TO dlock_user;
GRANT SELECT (queue_name, job_name, created_time, fence, log_id, expires_at) ON queue_locks
    TO dlock_user;
GRANT SELECT ON job_logs TO dlock_user;

-- Operators read everything, the holder's owner token included (`dlock status` shows who
-- holds what), and change nothing by hand.
GRANT SELECT ON queue_locks, job_logs TO dlock_operator;
-- They may let a completed slot run again (`dlock slots reset`): the function writes the audit.
GRANT EXECUTE ON FUNCTION dlock_reset_slot_v1(text, text, text, text, text) TO dlock_operator;

-- They may release a lock on purpose (`dlock release`) and prune old job log rows (`dlock
-- prune`); the functions close the holder's row and write the audit row themselves.
GRANT EXECUTE ON FUNCTION
    dlock_operator_release_v1(text, text, bigint, text, text),
    dlock_prune_batch_v1(double precision, bigint, integer, boolean)
TO dlock_operator;
-- A holder whose lock an operator released reads who did it and why; the code location's
-- retention schedule prunes old job log rows (at least a day old, bounded in the function).
GRANT EXECUTE ON FUNCTION
    dlock_operator_release_note_v1(bigint, bigint),
    dlock_prune_batch_v1(double precision, bigint, integer, boolean)
TO dlock_user;
