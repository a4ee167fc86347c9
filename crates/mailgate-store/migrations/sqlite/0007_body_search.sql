-- The list search also looks in the body: its text (HTML converted), at most 32 KiB, kept
-- beside the raw message so that searching needs no MIME decoding. Rows from before this
-- migration have none and are found by addresses and subject only.
ALTER TABLE mails ADD COLUMN body_text TEXT NOT NULL DEFAULT '';
ALTER TABLE inbox ADD COLUMN body_text TEXT NOT NULL DEFAULT '';
