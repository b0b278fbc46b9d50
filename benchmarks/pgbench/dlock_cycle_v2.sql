SELECT fence, log_id FROM dlock_acquire_v2('q', 'pgbench_v2', 'owner', 'pgbench', NULL, NULL, 300.0, true) \gset
SELECT dlock_release_v2('q', 'pgbench_v2', 'owner', :fence, :log_id, 'Completed', 'done');
