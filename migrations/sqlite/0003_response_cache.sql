-- The response cache ([cache] persist = true): answers by a hash of everything that decides them. Prompts and answers
-- are users' data: clear them with `switchyard cache clear` (or DELETE FROM response_cache).
CREATE TABLE response_cache (
    key          TEXT PRIMARY KEY NOT NULL,
    model        TEXT NOT NULL,
    digest       TEXT NOT NULL DEFAULT '',
    endpoint     TEXT NOT NULL,
    semantic_key TEXT,
    embedding    TEXT,
    answer       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX response_cache_created ON response_cache (created_at);
CREATE INDEX response_cache_model ON response_cache (model);
