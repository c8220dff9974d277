-- Every table of the mock, created (idempotently) when a Store opens a database (db.py).
-- Each table names the module that owns it: only that module reads or writes it.

-- db.py: resources and their generic search index
CREATE TABLE IF NOT EXISTS resource (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- creation order, the stable search sort
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (rtype, id)
);
CREATE TABLE IF NOT EXISTS search_string (   -- string params; value_lower for case-insensitive search
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
    value TEXT NOT NULL, value_lower TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_string_value ON search_string (rtype, param, value_lower);
CREATE INDEX IF NOT EXISTS search_string_owner ON search_string (rtype, id);
CREATE TABLE IF NOT EXISTS search_token (    -- token and reference params (type, member, ...)
    rtype TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_token_value_id ON search_token (rtype, param, value, id);  -- the probe of each candidate is a seek
DROP INDEX IF EXISTS search_token_value;
CREATE INDEX IF NOT EXISTS search_token_owner ON search_token (rtype, id);

-- resources/group.py: the database enforces one team per responsibility
CREATE TABLE IF NOT EXISTS responsibility (
    name TEXT PRIMARY KEY,
    group_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responsibility_group ON responsibility (group_id);

-- auth.py: tokens issued by the token endpoint
CREATE TABLE IF NOT EXISTS access_token (
    token TEXT PRIMARY KEY, scopes TEXT NOT NULL, expires_at REAL NOT NULL
);

-- resources/task.py: one row per task (composite indexes answer searches) and its labels
CREATE TABLE IF NOT EXISTS task_index (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL, owner TEXT, patient TEXT,
    requester TEXT NOT NULL, description TEXT, description_lower TEXT, due TEXT, modified TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS task_owner_status ON task_index (owner, status, seq);
CREATE INDEX IF NOT EXISTS task_status ON task_index (status, seq);
CREATE INDEX IF NOT EXISTS task_patient ON task_index (patient, seq);
CREATE INDEX IF NOT EXISTS task_requester ON task_index (requester, seq);
CREATE INDEX IF NOT EXISTS task_description ON task_index (description_lower);
CREATE INDEX IF NOT EXISTS task_due ON task_index (due);
CREATE INDEX IF NOT EXISTS task_modified ON task_index (modified);
CREATE INDEX IF NOT EXISTS task_seq ON task_index (seq);
CREATE TABLE IF NOT EXISTS task_label (
    label TEXT NOT NULL, task_id TEXT NOT NULL, PRIMARY KEY (label, task_id)
);
CREATE INDEX IF NOT EXISTS task_label_task ON task_label (task_id);
CREATE TABLE IF NOT EXISTS label (name TEXT PRIMARY KEY);   -- Canvas creates unknown labels

-- population.py: Condition/Encounter/Observation of one patient, and which populations are loaded
CREATE TABLE IF NOT EXISTS compartment_resource (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    last_updated TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (rtype, id)
);
CREATE INDEX IF NOT EXISTS compartment_patient ON compartment_resource (patient_id);
CREATE TABLE IF NOT EXISTS population_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);

-- bulk/exporter.py: Group/Patient $export jobs (run by the worker in jobs.py)
CREATE TABLE IF NOT EXISTS export_job (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,              -- queued | running | complete | failed
    created REAL NOT NULL,
    request_url TEXT NOT NULL,
    base_url TEXT NOT NULL,
    group_id TEXT NOT NULL,
    params TEXT NOT NULL,
    progress TEXT NOT NULL DEFAULT '',
    manifest TEXT,
    error TEXT,
    finished REAL,
    last_poll REAL,
    polls INTEGER NOT NULL DEFAULT 0
);

-- cohort/: asynchronous Bulk Cohort creates (run by the worker in jobs.py)
CREATE TABLE IF NOT EXISTS cohort_job (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,             -- queued | running | complete | failed
    created REAL NOT NULL,
    base_url TEXT NOT NULL,
    body TEXT NOT NULL,
    group_id TEXT,
    error TEXT,
    error_status INTEGER
);
