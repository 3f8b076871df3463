-- The test-only `widgets` resource's table: what a new resource's SQLite migration looks like
-- (its declaration is in tests/widgets.rs; a test checks the two agree).
-- Instants are canonical ISO-8601 UTC text in DATETIME columns, as in migrations/sqlite.
CREATE TABLE widgets (
    id              INTEGER PRIMARY KEY,
    modified_date   DATETIME NOT NULL,
    size            INTEGER NOT NULL,
    label           TEXT,
    checked_at      DATETIME,
    active          BOOLEAN NOT NULL,
    extra           TEXT,
    deleted_at      DATETIME,
    synced_at       DATETIME NOT NULL,
    first_synced_at DATETIME NOT NULL
);
CREATE INDEX widgets_modified_date ON widgets (modified_date);
CREATE INDEX widgets_label ON widgets (label);
