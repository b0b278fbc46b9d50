-- Versioned protocol functions. The code calls each function by its versioned name and checks
-- at start-up that every one it needs exists. A migration that changes a function's signature or
-- meaning adds the next version beside this one, so code of the previous release keeps working
-- against the migrated schema; a later migration drops the old version once no deployment runs
-- it. Every function is one round trip and one transaction.

-- Version 1 is 0003's functions under versioned names: renamed, not copied, so their bodies
-- stay exactly as 0003 wrote them.
ALTER FUNCTION dlock_acquire(text, text, text, text, text, text, double precision, boolean)
    RENAME TO dlock_acquire_v1;
ALTER FUNCTION dlock_release(text, text, text, bigint, bigint, text, text)
    RENAME TO dlock_release_v1;
ALTER FUNCTION dlock_abandon(text, text, text, text, text, text, text)
    RENAME TO dlock_abandon_v1;

-- Renew: push the lease end out, only for the holder with this owner and fence. False means
-- the lock was taken over (or released).
CREATE FUNCTION dlock_renew_v1(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_fence         bigint,
    p_lease_seconds double precision
)
RETURNS boolean
LANGUAGE sql
AS $$
    WITH renewed AS (
        UPDATE queue_locks q
           SET expires_at = clock_timestamp() + make_interval(secs => p_lease_seconds)
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM renewed)
$$;

-- Still held: whether the holder with this owner and fence still has the lock (ensure_held()).
CREATE FUNCTION dlock_still_held_v1(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint
)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM queue_locks q
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
    )
$$;

-- The unversioned names are what release 0.1.0 calls. They keep their meaning by delegating to
-- version 1 until a later release, once no deployment runs 0.1.0, drops them together with
-- dlock_schema_version().
CREATE FUNCTION dlock_acquire(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_app_id        text,
    p_run_id        text,
    p_slot          text,
    p_lease_seconds double precision,
    p_log_loss      boolean,
    OUT acquired    boolean,
    OUT fence       bigint,
    OUT log_id      bigint,
    OUT reason      text,
    OUT holder      text,
    OUT since       timestamptz
)
LANGUAGE sql
AS $$
    SELECT * FROM dlock_acquire_v1(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                                   p_lease_seconds, p_log_loss)
$$;

CREATE FUNCTION dlock_release(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text
)
RETURNS boolean
LANGUAGE sql
AS $$
    SELECT dlock_release_v1(p_queue_name, p_job_name, p_owner, p_fence, p_log_id, p_status,
                            p_remark)
$$;

CREATE FUNCTION dlock_abandon(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_app_id     text,
    p_run_id     text,
    p_slot       text,
    p_remark     text
)
RETURNS void
LANGUAGE sql
AS $$
    SELECT dlock_abandon_v1(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                            p_remark)
$$;
