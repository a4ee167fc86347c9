-- Certificate and Google service-account credentials; OAUTHBEARER as an alternative to XOAUTH2.
ALTER TABLE oauth_clients ADD COLUMN credential_kind TEXT NOT NULL DEFAULT 'secret';
ALTER TABLE oauth_clients ADD COLUMN certificate TEXT;
ALTER TABLE oauth_clients ADD COLUMN signing_alg TEXT NOT NULL DEFAULT 'RS256';
ALTER TABLE accounts ADD COLUMN oauth_mechanism TEXT NOT NULL DEFAULT 'auto';
