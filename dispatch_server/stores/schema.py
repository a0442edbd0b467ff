"""The SQLite schema of the server's durable state (``<data_dir>/dispatch.sqlite3``).

Each table belongs to one domain module, named in its comment; only that module reads or writes it.

This is version 1 of the schema, as releases before versioning made it; what came since is in the
steps of :mod:`dispatch_server.stores.migrations` (statistics' day summaries: ``stores/stats_days.py``).
A change to the schema is a new step there, not an edit here.
"""

SCHEMA = """
-- accounts (stores/accounts.py)
CREATE TABLE IF NOT EXISTS units (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    name TEXT                       -- what people call it (ADDED_COLUMNS)
);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions(expires_at);
-- actions.py
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,              -- JSON of the action (see actions.py)
    state TEXT NOT NULL,
    updated_at REAL NOT NULL
);
-- instructions.py (the durable outbox)
CREATE TABLE IF NOT EXISTS instructions (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL,
    seq INTEGER NOT NULL,           -- per-unit, monotonic, never reused
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    action_id TEXT,
    case_number TEXT,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    ack_deadline_s REAL NOT NULL,
    delivered_at REAL, acknowledged_at REAL, done_at REAL, refused_at REAL, expired_at REAL,
    cancelled_at REAL,             -- (ADDED_COLUMNS)
    reason TEXT,
    result TEXT,                    -- JSON the unit reported with done/refused (ADDED_COLUMNS)
    overdue_alerted INTEGER NOT NULL DEFAULT 0,
    UNIQUE (unit_id, seq)
);
CREATE INDEX IF NOT EXISTS instructions_pending ON instructions(unit_id, state, seq);
CREATE INDEX IF NOT EXISTS instructions_expiry ON instructions(state, expires_at);
CREATE TABLE IF NOT EXISTS unit_seq (unit_id TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
-- alerts.py
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL
);
-- audit.py (rows are written with the action they record); audit_ledger.py ships them to the ledger
CREATE TABLE IF NOT EXISTS audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,            -- username, "unit:<id>" or "system"
    verb TEXT NOT NULL,             -- e.g. instruction.delivered
    subject TEXT NOT NULL,          -- e.g. instruction id
    detail TEXT NOT NULL,           -- JSON
    ledger_index INTEGER            -- its operator_action entry in the evidence ledger; NULL until shipped
);
-- party access (party_access.py, footage_requests.py, party_links.py)
CREATE TABLE IF NOT EXISTS party_codes (
    code_hash TEXT PRIMARY KEY, case_number TEXT NOT NULL, party_name TEXT NOT NULL,
    issued_by TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL, used_at REAL
);
CREATE TABLE IF NOT EXISTS party_sessions (
    token_hash TEXT PRIMARY KEY, case_number TEXT NOT NULL, party_name TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS party_failures (
    key TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until REAL NOT NULL, last_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS footage_requests (
    id TEXT PRIMARY KEY, case_number TEXT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS footage_requests_case ON footage_requests(case_number);
CREATE TABLE IF NOT EXISTS party_links (
    id TEXT PRIMARY KEY, token_hash TEXT UNIQUE NOT NULL, request_id TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL, revoked_by TEXT,
    uses INTEGER NOT NULL DEFAULT 0
);
-- procedure_breaks.py (流程预警: rule breaks of running actions, and the spoken notices)
CREATE TABLE IF NOT EXISTS procedure_breaks (
    id TEXT PRIMARY KEY,
    action_id TEXT NOT NULL,
    rule TEXT NOT NULL,             -- min_recorders, record_before_start, stay_in_area, notice
    unit_id TEXT,                   -- NULL for rules of the whole action
    started_at REAL NOT NULL,
    ended_at REAL,                  -- NULL while open
    detail TEXT NOT NULL            -- JSON
);
CREATE INDEX IF NOT EXISTS procedure_breaks_action ON procedure_breaks(action_id, started_at);
CREATE INDEX IF NOT EXISTS procedure_breaks_time ON procedure_breaks(started_at);
CREATE TABLE IF NOT EXISTS procedure_notices (
    action_id TEXT PRIMARY KEY,
    notice_at REAL NOT NULL,
    marked_by TEXT NOT NULL,        -- the officer as the unit named them, else "unit:<id>"
    unit_id TEXT NOT NULL
);
"""

# Columns added after a table was first created: ``CREATE TABLE IF NOT EXISTS`` leaves an
# existing table as it is, so a database made by an earlier release gets them here.
ADDED_COLUMNS = (
    ("instructions", "result", "TEXT"),
    ("audit", "ledger_index", "INTEGER"),
    ("instructions", "cancelled_at", "REAL"),
    ("units", "name", "TEXT"),
)

# Indexes over added columns: created once the columns exist.
AFTER_COLUMNS = """
CREATE INDEX IF NOT EXISTS audit_unshipped ON audit(n) WHERE ledger_index IS NULL;
-- statistics (stores/stats_queries.py) read by time
CREATE INDEX IF NOT EXISTS instructions_stats
    ON instructions(created_at, action_id, unit_id, type, state, delivered_at, acknowledged_at);
CREATE INDEX IF NOT EXISTS alerts_created ON alerts(created_at);
CREATE INDEX IF NOT EXISTS footage_requests_created ON footage_requests(created_at);
CREATE INDEX IF NOT EXISTS party_links_request ON party_links(request_id);
"""
