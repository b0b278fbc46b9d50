-- A run may re-run a completed slot on purpose (the Dagster guard's run tag dlock/rerun): in one
-- transaction the slot's Completed row is reset (dlock_reset_slot_v1 writes the audit row) and
-- the lock and slot are acquired as dlock_acquire_v2 does. If the acquire does not succeed (the
-- lock is held, the slot is running), the reset is undone: a re-run that did not run leaves the
-- slot completed, as it was, and only its loser's Exited row says it tried. reset_id is the
-- audit row's id, NULL when there was no Completed row to reset (or the re-run did not run).
CREATE FUNCTION dlock_acquire_rerun_v1(
    p_queue_name    text,
    p_job_name      text,
    p_owner         text,
    p_app_id        text,
    p_run_id        text,
    p_slot          text,
    p_lease_seconds double precision,
    p_record_loser  boolean,
    p_remark        text,
    OUT acquired     boolean,
    OUT fence        bigint,
    OUT log_id       bigint,
    OUT reason       text,
    OUT holder       text,
    OUT since        timestamptz,
    OUT completed_at timestamptz,
    OUT note         text,
    OUT reset_id     bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_acquire record;
BEGIN
    IF p_slot IS NULL OR p_slot = '' THEN
        RAISE EXCEPTION 'dlock_acquire_rerun_v1 needs a slot: a run without one always runs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        reset_id := dlock_reset_slot_v1(p_queue_name, p_job_name, p_slot, p_app_id, p_remark);
        SELECT * INTO v_acquire
          FROM dlock_acquire_v2(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                                p_lease_seconds, false);
        IF NOT v_acquire.acquired THEN
            -- Undo the reset (and nothing else was written): the block's changes roll back.
            RAISE EXCEPTION 'not acquired' USING ERRCODE = 'DLR01';
        END IF;
    EXCEPTION WHEN SQLSTATE 'DLR01' THEN
        reset_id := NULL;
    END;
    acquired := v_acquire.acquired;
    fence := v_acquire.fence;
    log_id := v_acquire.log_id;
    reason := v_acquire.reason;
    holder := v_acquire.holder;
    since := v_acquire.since;
    completed_at := v_acquire.completed_at;
    note := v_acquire.note;
    IF NOT acquired AND p_record_loser THEN
        INSERT INTO job_logs AS l (app_id, queue_name, job_name, status, remark, run_id, slot)
        VALUES (p_app_id, p_queue_name, p_job_name, 'Exited',
                'Not run (re-run on purpose): ' || note, p_run_id, p_slot)
        RETURNING l.id INTO log_id;
    END IF;
END
$$;
-- Like the protocol's functions (0007): runs as its owner with a pinned search_path, and only
-- the roles granted it may call it (sql/roles.sql: dlock_user, whose runs may re-run a slot on
-- purpose as they may claim any slot).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION dlock_acquire_rerun_v1(text, text, text, text, text, text, '
                   'double precision, boolean, text) SECURITY DEFINER SET search_path = %I, '
                   'pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION dlock_acquire_rerun_v1(text, text, text, text, text, text,
                                              double precision, boolean, text) FROM PUBLIC;
