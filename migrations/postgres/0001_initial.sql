-- Switchyard schema, Postgres flavour. Times are milliseconds since the Unix epoch.

CREATE TABLE models (
    name               TEXT PRIMARY KEY NOT NULL,
    digest             TEXT NOT NULL DEFAULT '',
    size_bytes         BIGINT NOT NULL DEFAULT 0,
    family             TEXT NOT NULL DEFAULT '',
    parameter_size     TEXT NOT NULL DEFAULT '',
    quantization       TEXT NOT NULL DEFAULT '',
    capabilities       TEXT NOT NULL DEFAULT '',
    context_length     BIGINT,
    kv_bytes_per_token BIGINT,
    load_seconds       DOUBLE PRECISION,
    vram_bytes         BIGINT,
    vram_num_ctx       BIGINT,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE profile_runs (
    id                 TEXT PRIMARY KEY NOT NULL,
    model              TEXT NOT NULL,
    digest             TEXT NOT NULL,
    suite_version      TEXT NOT NULL,
    categories         TEXT NOT NULL,
    items_per_category BIGINT NOT NULL,
    status             TEXT NOT NULL,
    started_at         BIGINT NOT NULL,
    finished_at        BIGINT,
    load_seconds       DOUBLE PRECISION,
    vram_bytes         BIGINT,
    vram_probe_delta   BIGINT,
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
    correct       BIGINT NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    ttft_ms       DOUBLE PRECISION,
    prefill_tps   DOUBLE PRECISION,
    decode_tps    DOUBLE PRECISION,
    prompt_tokens BIGINT,
    output_tokens BIGINT,
    total_ms      DOUBLE PRECISION,
    error         TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (model, digest, suite_version, item_id)
);
CREATE INDEX profile_results_category ON profile_results (model, digest, category, suite_version);

CREATE TABLE profile_scores (
    model              TEXT NOT NULL,
    category           TEXT NOT NULL,
    digest             TEXT NOT NULL,
    suite_version      TEXT NOT NULL,
    n                  BIGINT NOT NULL,
    successes          BIGINT NOT NULL,
    mean               DOUBLE PRECISION NOT NULL,
    ci_low             DOUBLE PRECISION NOT NULL,
    ci_high            DOUBLE PRECISION NOT NULL,
    ttft_p50_ms        DOUBLE PRECISION,
    ttft_p95_ms        DOUBLE PRECISION,
    latency_p50_ms     DOUBLE PRECISION,
    latency_p95_ms     DOUBLE PRECISION,
    prefill_tps        DOUBLE PRECISION,
    decode_tps         DOUBLE PRECISION,
    mean_output_tokens DOUBLE PRECISION,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (model, category)
);

CREATE TABLE routing_decisions (
    id                 BIGSERIAL PRIMARY KEY,
    request_id         TEXT NOT NULL,
    at                 BIGINT NOT NULL,
    surface            TEXT NOT NULL,
    category           TEXT NOT NULL,
    requested          TEXT NOT NULL,
    chosen             TEXT NOT NULL,
    quality_preference DOUBLE PRECISION NOT NULL,
    decision_us        DOUBLE PRECISION NOT NULL,
    candidates_json    TEXT NOT NULL
);
CREATE INDEX routing_decisions_at ON routing_decisions (at);

CREATE TABLE load_events (
    id          BIGSERIAL PRIMARY KEY,
    at          BIGINT NOT NULL,
    model       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    strategy    TEXT,
    duration_ms DOUBLE PRECISION,
    bytes       BIGINT,
    ok          BIGINT NOT NULL,
    error       TEXT
);
CREATE INDEX load_events_model ON load_events (model, at);
