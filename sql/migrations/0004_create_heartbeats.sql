-- The heartbeat jobs' own work: one row per beat, written under the lock with its fence.
CREATE TABLE heartbeats (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id     varchar(200) NOT NULL,
    queue_name varchar(100) NOT NULL,
    job_name   varchar(100) NOT NULL,
    fence      bigint       NOT NULL,
    slot       text,
    run_id     text,
    beat_time  timestamptz  NOT NULL DEFAULT clock_timestamp()
);
