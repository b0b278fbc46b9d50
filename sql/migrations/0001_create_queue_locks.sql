-- One row per held lock. The row is the lease: present and unexpired means held.
CREATE SEQUENCE queue_lock_fence_seq AS bigint;

CREATE TABLE queue_locks (
    queue_name   varchar(100) NOT NULL CHECK (queue_name <> ''),
    job_name     varchar(100) NOT NULL CHECK (job_name <> ''),
    created_time timestamptz  NOT NULL DEFAULT clock_timestamp(),
    owner        text         NOT NULL,
    fence        bigint       NOT NULL,
    log_id       bigint       NOT NULL,
    expires_at   timestamptz  NOT NULL,
    PRIMARY KEY (queue_name, job_name)
);
