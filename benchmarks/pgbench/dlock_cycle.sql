SELECT fence, log_id FROM dlock_acquire_v1('q', 'pgbench', 'owner', 'pgbench', NULL, NULL, 300.0, true) \gset
SELECT dlock_release_v1('q', 'pgbench', 'owner', :fence, :log_id, 'Completed', 'done');
