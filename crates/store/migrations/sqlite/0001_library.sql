-- The research library and task history (SQLite). Times are Unix seconds (DOUBLE
-- PRECISION), lists are '|'-delimited upper-case text ('|EUR/USD|GBP/USD|') so one LIKE finds
-- a member; JSON documents are TEXT. Integers are INTEGER throughout.

CREATE TABLE sources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
    lease_until REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    UNIQUE (kind, content_key, options_key)
);

CREATE TABLE segments (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_s REAL,
    end_s REAL,
    text TEXT NOT NULL,
    PRIMARY KEY (source_id, idx)
);

CREATE TABLE pages (
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    text TEXT NOT NULL,
    ocr INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (source_id, page)
);

CREATE TABLE media (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    bytes INTEGER,
    at_s REAL
);
CREATE INDEX media_source ON media (source_id);

CREATE TABLE strategies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER REFERENCES sources(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    instruments TEXT NOT NULL DEFAULT '',
    timeframes TEXT NOT NULL DEFAULT '',
    indicators TEXT NOT NULL DEFAULT '',
    style TEXT,
    provider TEXT,
    model TEXT,
    confidence REAL,
    body TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX strategies_source ON strategies (source_id);
CREATE INDEX strategies_created ON strategies (created_at);

CREATE TABLE analyses (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER REFERENCES sources(id) ON DELETE CASCADE,
    path TEXT,
    provider TEXT,
    model TEXT,
    doc TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE llm_usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_id INTEGER REFERENCES sources(id) ON DELETE SET NULL,
    task_id TEXT,
    purpose TEXT,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    calls INTEGER NOT NULL,
    cost_usd REAL,
    at REAL NOT NULL
);

CREATE TABLE task_runs (
    task_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    queue TEXT,
    state TEXT NOT NULL,
    worker TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    parent_id TEXT,
    root_id TEXT,
    args TEXT,
    kwargs TEXT,
    received_at REAL,
    started_at REAL,
    finished_at REAL,
    runtime REAL,
    error_type TEXT,
    error_message TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX task_runs_updated ON task_runs (updated_at);
CREATE INDEX task_runs_name ON task_runs (name, updated_at);

CREATE TABLE task_transitions (
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    at REAL NOT NULL,
    worker TEXT
);
CREATE INDEX task_transitions_task ON task_transitions (task_id, at);
CREATE INDEX task_transitions_at ON task_transitions (at);

-- Full-text search over strategies: a contentless FTS5 index (contentless_delete: rows can go) kept by triggers.
CREATE VIRTUAL TABLE strategies_fts USING fts5(
    text, content='', contentless_delete=1, tokenize='porter unicode61'
);
CREATE TRIGGER strategies_ai AFTER INSERT ON strategies BEGIN
    INSERT INTO strategies_fts (rowid, text) VALUES (new.id, new.name || ' '
        || replace(new.instruments, '|', ' ') || ' ' || replace(new.indicators, '|', ' ') || ' '
        || coalesce(new.style, '') || ' ' || new.body);
END;
CREATE TRIGGER strategies_ad AFTER DELETE ON strategies BEGIN
    DELETE FROM strategies_fts WHERE rowid = old.id;
END;
