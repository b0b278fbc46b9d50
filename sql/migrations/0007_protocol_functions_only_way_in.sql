-- The protocol's functions become the only way in for a lock user: they run as their owner
-- (the role that migrates), with the search_path pinned to this schema so a caller cannot slip
-- its own tables or functions in front of ours, and they check their own bounds. A lock user
-- then needs EXECUTE on them and at most column-level SELECT without `owner` (the owner token is
-- the holder's secret: renewing or releasing a lock needs it); sql/roles.sql grants exactly
-- that. Nobody else may call them.
--
-- Version 1 and the unversioned names stay as they were (run as the caller), for code of
-- earlier releases, whose users need direct rights on the tables; restricted roles take effect
-- once those are dropped.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOREACH v_function IN ARRAY ARRAY[
        'dlock_check_lease_v1(double precision)',
        'dlock_acquire_v2(text, text, text, text, text, text, double precision, boolean)',
        'dlock_release_v2(text, text, text, bigint, bigint, text, text)',
        'dlock_abandon_v2(text, text, text, text, text, text, text)',
        'dlock_renew_all_v1(text[], text[], text[], bigint[], double precision[])',
        'dlock_still_held_v1(text, text, text, bigint)',
        'dlock_fence_is_current_v1(text, text, bigint)'
    ]::regprocedure[] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       v_function, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', v_function);
    END LOOP;
END
$$;
