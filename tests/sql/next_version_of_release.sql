-- A test-only migration shaped like a real protocol change: the next version of dlock_release,
-- with another signature, added beside version 4 (which code of the current release still calls).
CREATE FUNCTION dlock_release_v5(
    p_queue_name text,
    p_job_name   text,
    p_owner      text,
    p_fence      bigint,
    p_log_id     bigint,
    p_status     text,
    p_remark     text,
    p_detail     jsonb
)
RETURNS text
LANGUAGE sql
AS $$
    SELECT dlock_release_v4(p_queue_name, p_job_name, p_owner, p_fence, p_log_id, p_status,
                            p_remark || ' ' || p_detail::text)
$$;
