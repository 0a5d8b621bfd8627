-- What the nodes of a cluster share so that no node holds anything a client needs
-- back: the state of each multipart upload to the object store (resumed on any node),
-- and the failed-login counts of peers (so that a ban holds on every node).

-- One multipart upload in progress, as the object store backend saves it after each
-- part: `name` is the partial-upload name the home derives from path and size.
CREATE TABLE upload_states (
    account text NOT NULL,
    name text NOT NULL,
    path text NOT NULL,
    upload_id text NOT NULL,
    part_size bigint NOT NULL CHECK (part_size > 0),
    -- The ETags of parts 1..N, in order.
    parts text[] NOT NULL,
    -- The MD5 state after the parts, hex.
    md5_state text NOT NULL,
    expected_md5 text,
    -- When a part was last added, in Unix seconds.
    updated bigint NOT NULL,
    PRIMARY KEY (account, name)
);

-- Failed logins of one peer (an IPv4 address, or an IPv6 /64) within the window that
-- began at window_start; banned_until is set when they reach the limit. Times are the
-- database's, so the nodes' clocks need not agree.
CREATE TABLE login_failures (
    peer text PRIMARY KEY,
    failures integer NOT NULL CHECK (failures >= 0),
    window_start timestamptz NOT NULL,
    banned_until timestamptz
);
CREATE INDEX login_failures_by_window ON login_failures (window_start);
