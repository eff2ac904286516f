-- Switchyard schema, SQLite flavour. Times are milliseconds since the Unix epoch.

CREATE TABLE models (
    name               TEXT PRIMARY KEY NOT NULL,
    digest             TEXT NOT NULL DEFAULT '',
    size_bytes         INTEGER NOT NULL DEFAULT 0,
    family             TEXT NOT NULL DEFAULT '',
    parameter_size     TEXT NOT NULL DEFAULT '',
    quantization       TEXT NOT NULL DEFAULT '',
    capabilities       TEXT NOT NULL DEFAULT '',
    context_length     INTEGER,
    kv_bytes_per_token INTEGER,
    load_seconds       REAL,
    vram_bytes         INTEGER,
    vram_num_ctx       INTEGER,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE profile_runs (
    id                 TEXT PRIMARY KEY NOT NULL,
    model              TEXT NOT NULL,
    digest             TEXT NOT NULL,
    suite_version      TEXT NOT NULL,
    categories         TEXT NOT NULL,
    items_per_category INTEGER NOT NULL,
    status             TEXT NOT NULL,
    started_at         INTEGER NOT NULL,
    finished_at        INTEGER,
    load_seconds       REAL,
    vram_bytes         INTEGER,
    vram_probe_delta   INTEGER,
    error              TEXT
);
CREATE INDEX profile_runs_model ON profile_runs (model, started_at);

CREATE TABLE profile_results (
    model         TEXT NOT NULL,
    digest        TEXT NOT NULL,
    category      TEXT NOT NULL,
    item_id       TEXT NOT NULL,
    suite_version TEXT NOT NULL,
    run_id        TEXT NOT NULL,
    correct       INTEGER NOT NULL,
    score         REAL NOT NULL,
    ttft_ms       REAL,
    prefill_tps   REAL,
    decode_tps    REAL,
    prompt_tokens INTEGER,
    output_tokens INTEGER,
    total_ms      REAL,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (model, digest, suite_version, item_id)
);
CREATE INDEX profile_results_category ON profile_results (model, digest, category, suite_version);

CREATE TABLE profile_scores (
    model              TEXT NOT NULL,
    category           TEXT NOT NULL,
    digest             TEXT NOT NULL,
    suite_version      TEXT NOT NULL,
    n                  INTEGER NOT NULL,
    successes          INTEGER NOT NULL,
    mean               REAL NOT NULL,
    ci_low             REAL NOT NULL,
    ci_high            REAL NOT NULL,
    ttft_p50_ms        REAL,
    ttft_p95_ms        REAL,
    latency_p50_ms     REAL,
    latency_p95_ms     REAL,
    prefill_tps        REAL,
    decode_tps         REAL,
    mean_output_tokens REAL,
    updated_at         INTEGER NOT NULL,
    PRIMARY KEY (model, category)
);

CREATE TABLE routing_decisions (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id         TEXT NOT NULL,
    at                 INTEGER NOT NULL,
    surface            TEXT NOT NULL,
    category           TEXT NOT NULL,
    requested          TEXT NOT NULL,
    chosen             TEXT NOT NULL,
    quality_preference REAL NOT NULL,
    decision_us        REAL NOT NULL,
    candidates_json    TEXT NOT NULL
);
CREATE INDEX routing_decisions_at ON routing_decisions (at);

CREATE TABLE load_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    model       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    strategy    TEXT,
    duration_ms REAL,
    bytes       INTEGER,
    ok          INTEGER NOT NULL,
    error       TEXT
);
CREATE INDEX load_events_model ON load_events (model, at);
