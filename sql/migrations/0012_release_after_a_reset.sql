-- Version 4 of release: version 3, except that a release sent again after its reply was lost
-- still says 'released' when an operator reset its slot in between (dlock_reset_slot_v1 or a
-- re-run turned its Completed row into Reset). Version 3 then found neither its Completed row
-- nor its remark, said 'lost', and the holder raised LockLost for work it had completed. The
-- protocol's model found it (model/dlock.pml, MAXRESET).
--
-- Version 3 stays for code of the release before this one; version 4 takes its fast path as it
-- is and adds the check only where version 3 would have said 'lost'. The fast path is copied,
-- not called: calling version 3 would add a nested SECURITY DEFINER call (and its search_path
-- switch) to every release, the hot path the benchmark measures.

CREATE FUNCTION dlock_release_v4(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text
)
RETURNS text
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_freed   boolean;
    v_outcome text;
BEGIN
    WITH freed AS (
        UPDATE queue_locks q
           SET owner = NULL, log_id = NULL, expires_at = clock_timestamp()
         WHERE q.queue_name = p_queue_name AND q.job_name = p_job_name
           AND q.owner = p_owner AND q.fence = p_fence
        RETURNING q.fence
    ), closed AS (
        UPDATE job_logs l
           SET status = p_status, remark = l.remark || '; ' || p_remark,
               updated_time = clock_timestamp()
          FROM freed
         WHERE l.id = p_log_id AND l.status = 'Processing' AND l.fence = freed.fence
    )
    SELECT true INTO v_freed FROM freed;
    IF v_freed THEN
        RETURN 'released';
    END IF;
    v_outcome := dlock_release_v2(p_queue_name, p_job_name, p_owner, p_fence, p_log_id,
                                  p_status, p_remark);
    -- Only this grant's own release writes Completed to its row, and only a Completed row is
    -- ever reset: a Reset row at this id and fence means this very release happened.
    IF v_outcome = 'lost' AND p_status = 'Completed' AND EXISTS (
        SELECT 1 FROM job_logs l
         WHERE l.id = p_log_id AND l.fence = p_fence AND l.status = 'Reset'
    ) THEN
        RETURN 'released';
    END IF;
    RETURN v_outcome;
END
$$;

-- Like the other protocol functions (0007): runs as its owner with a pinned search_path; only
-- the roles granted it may call it (sql/roles.sql: dlock_user).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION dlock_release_v4(text, text, text, bigint, bigint, text, text) '
                   'SECURITY DEFINER SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE ALL ON FUNCTION dlock_release_v4(text, text, text, bigint, bigint, text, text) FROM PUBLIC;
