-- A fleet's nodes share one store: quality is a property of a model, speed and pins belong to a node. Rows here are
-- written by a node with a name (server.node_name) and read back by that node only; a router without a name keeps
-- using the shared rows alone, as before.
CREATE TABLE pins_by_node (
    node      TEXT NOT NULL DEFAULT '',
    model     TEXT NOT NULL,
    pinned_at INTEGER NOT NULL,
    PRIMARY KEY (node, model)
);
INSERT INTO pins_by_node (node, model, pinned_at) SELECT '', model, pinned_at FROM pins;
DROP TABLE pins;
ALTER TABLE pins_by_node RENAME TO pins;

CREATE TABLE node_measurements (
    node         TEXT NOT NULL,
    model        TEXT NOT NULL,
    load_seconds REAL,
    vram_bytes   INTEGER,
    vram_num_ctx INTEGER,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (node, model)
);

CREATE TABLE node_speeds (
    node           TEXT NOT NULL,
    model          TEXT NOT NULL,
    category       TEXT NOT NULL,
    ttft_p50_ms    REAL,
    ttft_p95_ms    REAL,
    latency_p50_ms REAL,
    latency_p95_ms REAL,
    prefill_tps    REAL,
    decode_tps     REAL,
    updated_at     INTEGER NOT NULL,
    PRIMARY KEY (node, model, category)
);
