-- An operator may let a completed slot run again (a tick re-run, a partition recomputed): its
-- Completed row becomes Reset, a status that claims no slot and keeps its remark, so the history
-- stays readable and a slot never has two Completed rows. Each reset also writes a Reset row of
-- its own, the audit row, naming who reset the slot and why.
ALTER TABLE job_logs DROP CONSTRAINT job_logs_status_check;
ALTER TABLE job_logs ADD CONSTRAINT job_logs_status_check
    CHECK (status IN ('Processing', 'Completed', 'Exited', 'Failed', 'Reset'));

-- Reset the slot's Completed row, if it has one, and record who did it: returns the audit row's
-- id, or NULL when the slot was not completed (nothing is written then). A slot still running
-- is not completed: its holder's row is left alone.
CREATE FUNCTION dlock_reset_slot_v1(
    p_queue_name text,
    p_job_name   text,
    p_slot       text,
    p_app_id     text,
    p_remark     text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_completed_id bigint;
    v_audit_id     bigint;
BEGIN
    IF p_slot IS NULL OR p_slot = '' OR coalesce(p_remark, '') = '' THEN
        RAISE EXCEPTION 'dlock_reset_slot_v1 needs a slot and a remark saying why'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.id INTO v_completed_id
      FROM job_logs AS l
     WHERE l.queue_name = p_queue_name AND l.job_name = p_job_name
       AND l.slot = p_slot AND l.claims_slot AND l.status = 'Completed'
       FOR UPDATE;
    IF v_completed_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, slot)
    VALUES (p_app_id, p_queue_name, p_job_name, 'Reset',
            format('Slot reset: job log %s may run again. %s', v_completed_id, p_remark), p_slot)
    RETURNING id INTO v_audit_id;
    -- updated_time is left as it was: it still says when the slot completed.
    UPDATE job_logs
       SET status = 'Reset', remark = remark || format('; reset by job log %s', v_audit_id)
     WHERE id = v_completed_id;
    RETURN v_audit_id;
END
$$;
-- Like the protocol's functions (0007): runs as its owner with a pinned search_path, and only
-- the roles granted it may call it (sql/roles.sql: dlock_operator).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION dlock_reset_slot_v1(text, text, text, text, text) '
                   'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION dlock_reset_slot_v1(text, text, text, text, text) FROM PUBLIC;
