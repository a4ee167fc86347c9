-- Expiry notices sent, one row per OAuth client, expiration date and threshold (days before;
-- -1 = expired), so that a notice goes out once per threshold across restarts and a new
-- expiration date starts over.
CREATE TABLE expiry_notices (
    oauth_client_id TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    expires_on      TEXT NOT NULL,
    threshold       BIGINT NOT NULL,
    sent_at         BIGINT NOT NULL,
    mail_id         TEXT,
    PRIMARY KEY (oauth_client_id, expires_on, threshold)
);
