-- The research library and task history (PostgreSQL). Times are Unix seconds (DOUBLE
-- PRECISION), lists are '|'-delimited upper-case text ('|EUR/USD|GBP/USD|') so one LIKE finds
-- a member; JSON documents are TEXT. Integers are BIGINT throughout.

CREATE TABLE sources (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    content_key TEXT NOT NULL,
    options_key TEXT NOT NULL DEFAULT '',
    uri TEXT,
    title TEXT,
    metadata TEXT,
    status TEXT NOT NULL,
    result TEXT,
    error TEXT,
    claimed_by TEXT,
    lease_until DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    UNIQUE (kind, content_key, options_key)
);

CREATE TABLE segments (
    source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    start_s DOUBLE PRECISION,
    end_s DOUBLE PRECISION,
    text TEXT NOT NULL,
    PRIMARY KEY (source_id, idx)
);

CREATE TABLE pages (
    source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    page BIGINT NOT NULL,
    text TEXT NOT NULL,
    ocr BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, page)
);

CREATE TABLE media (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    width BIGINT,
    height BIGINT,
    bytes BIGINT,
    at_s DOUBLE PRECISION
);
CREATE INDEX media_source ON media (source_id);

CREATE TABLE strategies (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT REFERENCES sources(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    instruments TEXT NOT NULL DEFAULT '',
    timeframes TEXT NOT NULL DEFAULT '',
    indicators TEXT NOT NULL DEFAULT '',
    style TEXT,
    provider TEXT,
    model TEXT,
    confidence DOUBLE PRECISION,
    body TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    search tsvector GENERATED ALWAYS AS (
        to_tsvector('english', name || ' ' || replace(instruments, '|', ' ') || ' '
            || replace(indicators, '|', ' ') || ' ' || coalesce(style, '') || ' ' || body)
    ) STORED
);
CREATE INDEX strategies_search ON strategies USING GIN (search);
CREATE INDEX strategies_source ON strategies (source_id);
CREATE INDEX strategies_created ON strategies (created_at);

CREATE TABLE analyses (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT REFERENCES sources(id) ON DELETE CASCADE,
    path TEXT,
    provider TEXT,
    model TEXT,
    doc TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE llm_usage (
    id BIGSERIAL PRIMARY KEY,
    source_id BIGINT REFERENCES sources(id) ON DELETE SET NULL,
    task_id TEXT,
    purpose TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    calls BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION,
    at DOUBLE PRECISION NOT NULL
);

CREATE TABLE task_runs (
    task_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    queue TEXT,
    state TEXT NOT NULL,
    worker TEXT,
    retries BIGINT NOT NULL DEFAULT 0,
    parent_id TEXT,
    root_id TEXT,
    args TEXT,
    kwargs TEXT,
    received_at DOUBLE PRECISION,
    started_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    runtime DOUBLE PRECISION,
    error_type TEXT,
    error_message TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX task_runs_updated ON task_runs (updated_at);
CREATE INDEX task_runs_name ON task_runs (name, updated_at);

CREATE TABLE task_transitions (
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    worker TEXT
);
CREATE INDEX task_transitions_task ON task_transitions (task_id, at);
CREATE INDEX task_transitions_at ON task_transitions (at);
