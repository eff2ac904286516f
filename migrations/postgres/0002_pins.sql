-- Pins set at run time (POST /admin/vram/pin), kept across restarts. Pins from the configuration are not stored.
CREATE TABLE pins (
    model     TEXT PRIMARY KEY NOT NULL,
    pinned_at BIGINT NOT NULL
);
