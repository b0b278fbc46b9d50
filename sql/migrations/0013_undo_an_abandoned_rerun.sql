-- A re-run on purpose resets its slot's Completed row and takes the slot in one transaction
-- (dlock_acquire_rerun_v1). If that transaction commits and the caller never learns it (the reply
-- lost twice, an interrupt), the caller abandons the acquire (dlock_abandon_v2): that frees the
-- lock and closes the grant's row, but leaves the old Completed row Reset. Nothing ran, yet a
-- plain run then finds the slot open and runs it. Version 1's promise, that a re-run which did
-- not run leaves the slot completed, held only when the acquire itself failed.
--
-- Version 2 of the re-run notes on its grant's Processing row which Completed row it reset
-- (rerun_of); version 3 of abandon, closing a grant that has one, puts that row back to
-- Completed, and says so on both rows. The versions before stay for code of earlier releases.

-- On a re-run's Processing row: the slot's Completed row its acquire reset (now Reset), so an
-- abandoned re-run can put it back. NULL on every other row. No default: adding it rewrites
-- nothing, and no index reads it (the abandon finds the row by its id).
ALTER TABLE job_logs ADD COLUMN rerun_of bigint;

-- Version 1, and its grant's row also records the reset it made. Version 1 is called, not
-- copied: a re-run is rare, so the nested call costs nothing that matters.
CREATE FUNCTION dlock_acquire_rerun_v2(
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
    v_completed bigint;
BEGIN
    IF p_slot IS NULL OR p_slot = '' THEN
        RAISE EXCEPTION 'dlock_acquire_rerun_v2 needs a slot: a run without one always runs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The row version 1's reset retires, locked here so that it is the same row.
    SELECT l.id INTO v_completed
      FROM job_logs l
     WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
       AND l.slot = p_slot AND l.claims_slot AND l.status = 'Completed'
       FOR UPDATE;
    SELECT * INTO acquired, fence, log_id, reason, holder, since, completed_at, note, reset_id
      FROM dlock_acquire_rerun_v1(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                                  p_lease_seconds, p_record_loser, p_remark);
    -- A reset that stood (the acquire succeeded). A call sent again after its reply was lost
    -- finds the slot reset already (reset_id NULL) and leaves the first send's mark as it is.
    IF reset_id IS NOT NULL THEN
        UPDATE job_logs l SET rerun_of = v_completed
         WHERE l.id = dlock_acquire_rerun_v2.log_id;
    END IF;
END
$$;

-- Version 2's abandon; when the grant it closes was a re-run's, the Completed row that re-run
-- reset is Completed again, as if the re-run had never got the lock. Only while no other row
-- claims the slot (none can while we held the lock, but a hand-made one would break the slot's
-- unique index): then the reset stands, and the grant's row says so.
CREATE FUNCTION dlock_abandon_v3(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_app_id     text,
    p_run_id     text,
    p_slot       text,
    p_remark     text
)
RETURNS void
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_log_id   bigint;
    v_rerun_of bigint;
    v_slot     text;
    v_undone   boolean;
BEGIN
    -- The grant version 2 is about to close, read first: the lock row, locked here, keeps it
    -- Processing until version 2 closes it in this transaction.
    SELECT l.id, l.rerun_of, l.slot INTO v_log_id, v_rerun_of, v_slot
      FROM queue_locks q JOIN job_logs l ON l.id = q.log_id
     WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name AND q.owner = p_owner
       AND l.status = 'Processing'
       FOR UPDATE OF q;
    PERFORM dlock_abandon_v2(p_queue_name, p_job_name, p_owner, p_app_id, p_run_id, p_slot,
                             p_remark);
    IF v_rerun_of IS NULL THEN
        RETURN;
    END IF;
    UPDATE job_logs l
       SET status = 'Completed',
           remark = l.remark || format('; reset undone: the re-run (job log %s) was abandoned '
                                       'before it ran', v_log_id)
     WHERE l.id = v_rerun_of AND l.status = 'Reset'
       AND NOT EXISTS (
           SELECT 1 FROM job_logs c
            WHERE c.queue_name = p_queue_name AND c.job_name = p_job_name
              AND c.slot = v_slot AND c.claims_slot);
    v_undone := FOUND;
    UPDATE job_logs l
       SET remark = l.remark || CASE WHEN v_undone
           THEN format('; job log %s is Completed again', v_rerun_of)
           ELSE format('; job log %s stays Reset: another row claims the slot', v_rerun_of) END
     WHERE l.id = v_log_id;
END
$$;

-- Like the other protocol functions (0007): each runs as its owner with a pinned search_path;
-- only the roles granted them may call them (sql/roles.sql: dlock_user).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION dlock_acquire_rerun_v2(text, text, text, text, text, text, '
                   'double precision, boolean, text) SECURITY DEFINER SET search_path = %I, '
                   'pg_temp', current_schema());
    EXECUTE format('ALTER FUNCTION dlock_abandon_v3(text, text, text, text, text, text, text) '
                   'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION dlock_acquire_rerun_v2(text, text, text, text, text, text,
                                              double precision, boolean, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION dlock_abandon_v3(text, text, text, text, text, text, text) FROM PUBLIC;
