-- A fleet's nodes share one store: quality is a property of a model, speed and pins belong to a node. Rows here are
-- written by a node with a name (server.node_name) and read back by that node only; a router without a name keeps
-- using the shared rows alone, as before.
ALTER TABLE pins ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE pins DROP CONSTRAINT pins_pkey;
ALTER TABLE pins ADD PRIMARY KEY (node, model);

CREATE TABLE node_measurements (
    node         TEXT NOT NULL,
    model        TEXT NOT NULL,
    load_seconds DOUBLE PRECISION,
    vram_bytes   BIGINT,
    vram_num_ctx BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (node, model)
);

CREATE TABLE node_speeds (
    node           TEXT NOT NULL,
    model          TEXT NOT NULL,
    category       TEXT NOT NULL,
    ttft_p50_ms    DOUBLE PRECISION,
    ttft_p95_ms    DOUBLE PRECISION,
    latency_p50_ms DOUBLE PRECISION,
    latency_p95_ms DOUBLE PRECISION,
    prefill_tps    DOUBLE PRECISION,
    decode_tps     DOUBLE PRECISION,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (node, model, category)
);
