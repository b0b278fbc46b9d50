SELECT fence, log_id FROM dlock_acquire_v3('q', 'pgbench', 'owner', 'pgbench', NULL, NULL, 300.0, true) \gset
SELECT dlock_release_v4('q', 'pgbench', 'owner', :fence, :log_id, 'Completed', 'done');
