-- Several nodes on one database: which node retrieves an IMAP account (a lease its holder
-- renews while it works; a dead node's lease lapses and another node takes the account over),
-- and which periodic job ran for which period (one row per job and period: run once).
CREATE TABLE mailbox_leases (
    account_id   TEXT PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    owner        TEXT NOT NULL,
    locked_until INTEGER NOT NULL
);

CREATE TABLE job_runs (
    name         TEXT NOT NULL,
    period_start INTEGER NOT NULL,
    owner        TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    PRIMARY KEY (name, period_start)
);
