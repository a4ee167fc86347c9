-- mailgate schema v1. Times are milliseconds since the Unix epoch; lists are JSON arrays.
CREATE TABLE oauth_clients (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    template          TEXT NOT NULL,
    tenant            TEXT,
    client_id         TEXT NOT NULL,
    secret            TEXT,
    secret_updated_at INTEGER,
    scopes            TEXT NOT NULL,
    token_url         TEXT NOT NULL,
    expires_on        TEXT,
    comment           TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE accounts (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    protocol            TEXT NOT NULL,
    auth                TEXT NOT NULL,
    username            TEXT NOT NULL DEFAULT '',
    password            TEXT,
    password_updated_at INTEGER,
    oauth_client_id     TEXT REFERENCES oauth_clients(id),
    send_address        TEXT,
    send_name           TEXT,
    connection          TEXT NOT NULL,
    host                TEXT NOT NULL,
    port                INTEGER NOT NULL,
    imap_folder         TEXT NOT NULL DEFAULT 'INBOX',
    after_retrieval     TEXT NOT NULL DEFAULT 'delete',
    move_folder         TEXT,
    poll_interval_secs  INTEGER NOT NULL DEFAULT 60,
    idle                INTEGER NOT NULL DEFAULT 0,
    max_sessions        INTEGER NOT NULL DEFAULT 4,
    enabled             INTEGER NOT NULL DEFAULT 1,
    comment             TEXT NOT NULL DEFAULT '',
    last_success_at     INTEGER,
    last_error          TEXT,
    last_error_at       INTEGER,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    admin        INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

CREATE TABLE mails (
    id              TEXT PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    api_key_id      TEXT,
    message_id      TEXT NOT NULL,
    envelope_from   TEXT NOT NULL,
    recipients      TEXT NOT NULL,
    header_from     TEXT NOT NULL,
    to_display      TEXT NOT NULL,
    cc_display      TEXT NOT NULL DEFAULT '',
    subject         TEXT NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    size            INTEGER NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    locked_by       TEXT,
    locked_until    INTEGER,
    last_error      TEXT,
    server_reply    TEXT,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    sent_at         INTEGER
);
CREATE INDEX mails_due ON mails(status, next_attempt_at);
CREATE INDEX mails_created ON mails(created_at);
CREATE UNIQUE INDEX mails_idempotency ON mails(api_key_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE mail_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    mail_id     TEXT NOT NULL REFERENCES mails(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    reply       TEXT,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX mail_attempts_mail ON mail_attempts(mail_id);

CREATE TABLE traffic (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    direction    TEXT NOT NULL,
    account_name TEXT NOT NULL,
    mail_id      TEXT,
    message_id   TEXT NOT NULL,
    from_addr    TEXT NOT NULL,
    to_addrs     TEXT NOT NULL,
    cc_addrs     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    attachments  TEXT NOT NULL,
    size         INTEGER NOT NULL,
    at           INTEGER NOT NULL
);
CREATE INDEX traffic_at ON traffic(at);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
