-- What the nodes of a cluster share beyond the accounts: who is alive, which space
-- each has promised to uploads in flight, and which sessions each holds. A node's
-- rows expire with its heartbeat, so a killed node strands nothing.

CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    -- Host name and pid, for people.
    description text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- The node's reservations and sessions are void after this, unless renewed.
    lease_until timestamptz NOT NULL
);

-- Space promised to one upload (or a chunk of it). The same bytes are counted in
-- quota.reserved; expiry or release gives them back there.
CREATE TABLE reservations (
    id bigserial PRIMARY KEY,
    account text NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    node_id text NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
    bytes bigint NOT NULL CHECK (bytes >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX reservations_by_account ON reservations (account);
CREATE INDEX reservations_by_node ON reservations (node_id);
CREATE INDEX reservations_by_expiry ON reservations (expires_at);

-- One logged-in session, so that session limits count every node.
CREATE TABLE session_leases (
    id bigserial PRIMARY KEY,
    account text NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    node_id text NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
    peer text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX session_leases_by_account ON session_leases (account);
CREATE INDEX session_leases_by_node ON session_leases (node_id);
