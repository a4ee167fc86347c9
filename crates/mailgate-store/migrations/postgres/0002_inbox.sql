-- Retrieved mail: raw bytes exactly as the server held them, parsed fields for listing, and
-- the (account, folder, UIDVALIDITY, UID) key that makes a second fetch of a message a no-op.
CREATE TABLE inbox (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    folder        TEXT NOT NULL,
    uidvalidity   BIGINT NOT NULL,
    uid           BIGINT NOT NULL,
    message_id    TEXT,
    subject       TEXT NOT NULL,
    from_addr     TEXT NOT NULL,
    to_addrs      TEXT NOT NULL,
    cc_addrs      TEXT NOT NULL,
    date          BIGINT,
    size          BIGINT NOT NULL,
    parsed        TEXT NOT NULL,
    problems      TEXT NOT NULL,
    raw           BYTEA NOT NULL,
    received_at   BIGINT NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    consumed_at   BIGINT,
    UNIQUE (account_id, folder, uidvalidity, uid)
);
CREATE INDEX inbox_unconsumed ON inbox(consumed_at, received_at);
CREATE INDEX inbox_received ON inbox(received_at);

-- What the retriever last did per IMAP account.
CREATE TABLE retrieval_state (
    account_id      TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    uidvalidity     BIGINT,
    last_run_at     BIGINT,
    last_success_at BIGINT,
    last_error      TEXT,
    last_error_at   BIGINT,
    stored_total    BIGINT NOT NULL DEFAULT 0,
    oversize        TEXT NOT NULL DEFAULT '[]'
);
