-- Accounts, their keys and their quota: what `rsftpd user ...` edits and every node
-- reads. A change to any of them is announced on the channel rsftpd_accounts, so that
-- every node reloads within a second, whether the change came from rsftpd or from SQL.

CREATE TABLE accounts (
    name text PRIMARY KEY
        CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$'),
    -- Two names that differ only in case would share a home on a case-insensitive
    -- file system.
    name_folded text GENERATED ALWAYS AS (lower(name)) STORED UNIQUE,
    -- A PHC string (Argon2id); NULL: password login is refused.
    password_hash text,
    -- NULL: only the server-wide limit applies.
    max_sessions integer CHECK (max_sessions >= 1),
    -- NULL: no limit on files, folders and links but the quota.
    max_files bigint CHECK (max_files >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE account_keys (
    account text NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
    -- The order keys are listed in.
    position integer NOT NULL,
    -- SHA256:... of the key data: keys compare by key data, not by comment.
    fingerprint text NOT NULL,
    -- The authorized_keys line, options and comment included.
    line text NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, fingerprint)
);

-- One row per account. `limit_bytes` is the quota; `used` and `reserved` are the
-- shared ledger: bytes committed, and bytes promised to uploads in flight.
CREATE TABLE quota (
    account text PRIMARY KEY REFERENCES accounts (name) ON DELETE CASCADE,
    limit_bytes bigint NOT NULL CHECK (limit_bytes >= 0),
    used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);

CREATE FUNCTION rsftpd_accounts_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Notifications with the same payload in one transaction are sent once.
    PERFORM pg_notify('rsftpd_accounts', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER accounts_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION rsftpd_accounts_changed();
CREATE TRIGGER account_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON account_keys
    FOR EACH STATEMENT EXECUTE FUNCTION rsftpd_accounts_changed();
-- The ledger columns change at every upload; only the limit is news.
CREATE TRIGGER quota_limit_changed
    AFTER UPDATE OF limit_bytes ON quota
    FOR EACH ROW WHEN (OLD.limit_bytes IS DISTINCT FROM NEW.limit_bytes)
    EXECUTE FUNCTION rsftpd_accounts_changed();
CREATE TRIGGER quota_rows_changed
    AFTER INSERT OR DELETE OR TRUNCATE ON quota
    FOR EACH STATEMENT EXECUTE FUNCTION rsftpd_accounts_changed();
