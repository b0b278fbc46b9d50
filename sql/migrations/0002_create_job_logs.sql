-- One row per guarded execution attempt, winner or loser.
CREATE TABLE job_logs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    app_id       varchar(200) NOT NULL,
    queue_name   varchar(100) NOT NULL,
    job_name     varchar(100) NOT NULL,
    status       varchar(35)  NOT NULL
                 CHECK (status IN ('Processing', 'Completed', 'Exited', 'Failed')),
    remark       text         NOT NULL,
    run_id       text,
    fence        bigint,
    slot         text,
    created_time timestamptz  NOT NULL DEFAULT clock_timestamp(),
    updated_time timestamptz  NOT NULL DEFAULT clock_timestamp()
);

-- A slot completes at most once: the constraint, not a check in Python, refuses a duplicate.
CREATE UNIQUE INDEX job_logs_slot_once
    ON job_logs (queue_name, job_name, slot)
    WHERE status IN ('Processing', 'Completed');

-- Take-over finds the previous holder's open row by fence.
CREATE INDEX job_logs_processing_fence
    ON job_logs (queue_name, job_name, fence)
    WHERE status = 'Processing';
